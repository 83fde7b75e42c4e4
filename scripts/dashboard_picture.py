"""Draw the service overview dashboard from a drill's real Prometheus data as a PNG (needs the `docs` extra:
matplotlib). No Grafana runs here: the picture is drawn with matplotlib from the dashboard's own queries, as the
DashboardWorld's Prometheus answers them (canary traffic, then a real rollback run that sets the canary to 0).

    .venv/bin/python scripts/dashboard_picture.py [--out docs/dashboard-service-overview.png] [--seconds 90]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/dashboard-service-overview.png")
    parser.add_argument("--seconds", type=float, default=90, help="traffic before and after the rollback, each half")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from components import config as stack_config
    from components.alert_rules import slo_spec
    from components.manifests.dashboards import DashboardContext, dashboards
    from llmops.drill.dashboard_world import DashboardWorld
    from llmops.drill.rollback_drill import SERVICE, DrillSettings

    world = DashboardWorld(Path(tempfile.mkdtemp(prefix="llmops-dashboard-")),
                           DrillSettings(verification_window_seconds=2, verification_timeout_seconds=30), rate=40.0)
    world.start()
    try:
        began = time.time()
        world.wait_until_degraded()
        world.traffic.inject("regression")  # the canary starts failing...
        time.sleep(args.seconds / 2)  # a picture of a span of time needs the time to pass
        world.populate()  # ...and is rolled back (a real run), then the exporters push
        time.sleep(args.seconds / 2)
        end = time.time()
        specs = tuple(slo_spec(m) for m in stack_config.load_file(world.stack_source).models if m.name == SERVICE)
        board = next(b for b in dashboards(DashboardContext(world.rule_context(), specs)) if b.name.startswith("service-"))
        panels = [p for p in board.model["panels"] if p.get("type") in ("timeseries", "stat", "table")]
        series = [p for p in panels if p["type"] == "timeseries"]
        stats = [p for p in panels if p["type"] != "timeseries"]
        rows = 1 + (len(series) + 1) // 2
        figure = plt.figure(figsize=(14, 3.2 * rows))
        figure.suptitle(f"{board.title} -- drawn with matplotlib from the dashboard's queries on a drill's real "
                        "Prometheus (no Grafana runs here)", fontsize=11)
        top = figure.add_subplot(rows, 1, 1)
        top.axis("off")
        lines = []
        for panel in stats:
            for target in panel["targets"]:
                found = world.prometheus.query(target["expr"])
                if panel["type"] == "table":
                    value = ", ".join(f"{s['metric'].get('deployment')}: {s['metric'].get('label_llmops_io_release')}"
                                      for s in found)
                else:
                    value = ", ".join(f"{float(s['value'][1]):.4g}" for s in found)
                lines.append(f"{panel['title']}: {value or 'no data'}")
        top.text(0, 1, "\n".join(lines), va="top", family="monospace", fontsize=9)
        for index, panel in enumerate(series):
            axes = figure.add_subplot(rows, 2, 3 + index)
            axes.set_title(panel["title"], fontsize=9)
            for target in panel["targets"]:
                for line in world.query_range(target["expr"], began, end, 2):
                    legend = target.get("legendFormat", "")
                    for key, value in line["metric"].items():
                        legend = legend.replace("{{" + key + "}}", value)
                    xs = [float(t) - began for t, _ in line["values"]]
                    ys = [float(v) for _, v in line["values"]]
                    axes.plot(xs, ys, label=legend or target["expr"][:30])
            axes.legend(fontsize=7)
            axes.tick_params(labelsize=7)
            axes.set_xlabel("seconds into the drill", fontsize=7)
        figure.tight_layout(rect=(0, 0, 1, 0.97))
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(args.out, dpi=90)
        print(f"written {args.out}")
    finally:
        world.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
