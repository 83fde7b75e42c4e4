"""Draw the service overview dashboard from a drill's real Prometheus data as a PNG (needs the `docs` extra:
matplotlib). No Grafana runs here: the picture is drawn with matplotlib from the dashboard's own JSON -- its panels
where their gridPos puts them (24 columns), their titles, types, units, min/max and thresholds -- and its own queries,
as the DashboardWorld's Prometheus answers them (canary traffic regressing, then a real rollback run that sets the
canary to 0). The runbook-run annotation marks the rollback on every graph, as Grafana would.

    .venv/bin/python scripts/dashboard_picture.py [--out docs/dashboard-service-overview.png] [--seconds 90]

`--save-data FILE` keeps what Prometheus answered (and the dashboard JSON) and `--from-data FILE` draws from it
again without a drill, to adjust the drawing.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CAPTION = ("drawn with matplotlib from the dashboard's own queries on a drill's real Prometheus (no Grafana runs "
           "here): a canary regressing, then rolled back by a real runbook run")
# Grafana's dark theme, so that the picture reads as the dashboard does.
BACKGROUND, PANEL, BORDER, TEXT, MUTED, GRID = "#111217", "#181b1f", "#2c3235", "#d8d9da", "#8e8e9a", "#2c3235"
PALETTE = ["#73bf69", "#f2cc0c", "#8ab8ff", "#ff780a", "#f2495c", "#5794f2", "#b877d9"]  # Grafana's classic order
LIMIT = "#f2495c"
GRAFANA_COLORS = {"green": "#73bf69", "red": "#f2495c", "orange": "#ff9830", "yellow": "#fade2a", "blue": "#5794f2",
                  "purple": "#b877d9", "dark-red": "#c4162a", "dark-green": "#37872d", "dark-orange": "#fa6400",
                  "dark-yellow": "#e0b400", "text": TEXT, "transparent": PANEL}
REFERENCE = re.compile(r"^\s*vector\(\s*([-+0-9.eE]+)\s*\)\s*$")  # a constant: the SLO or limit a graph compares to
UNIT_PX, HEADER_PX, FOOTER_PX, WIDTH_PX, DPI = 28, 62, 30, 1400, 100


# --- numbers as the panel's unit shows them -------------------------------------------------------------------

def _number(value: float) -> str:
    size = abs(value)
    decimals = 2 if size < 1 else 1 if size < 100 else 0
    text = f"{value:.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def formatted(value: float, unit: str) -> str:
    """A stat's value as Grafana's unit shows it: percentunit 0.0119 -> 1.2 %, s 0.48 -> 0.48 s, reqps -> req/s."""
    if math.isnan(value):
        return "NaN"
    if unit == "percentunit":
        return f"{_number(value * 100)} %"
    suffix = {"percent": " %", "s": " s", "reqps": " req/s", "ops": " ops/s", "x": "×", "celsius": " °C"}
    return _number(value) + suffix.get(unit, "" if unit in ("", "short", "none") else f" {unit}")


def tick(value: float, unit: str) -> str:
    """An axis tick: the unit's suffix on the tick's own value (no rounding beyond float noise)."""
    shown = round(value * 100 if unit == "percentunit" else value, 6)
    suffix = {"percentunit": " %", "percent": " %", "s": " s", "reqps": " req/s", "ops": " ops/s", "x": "×"}
    return f"{shown:g}{suffix.get(unit, '')}"


def threshold_color(panel: dict[str, Any], value: float) -> str | None:
    """The colour of the last threshold step at or below the value (Grafana's absolute mode); None without steps."""
    steps = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("thresholds", {}).get("steps") or []
    color = None
    for step in steps:
        if step.get("value") is None or value >= float(step["value"]):
            color = str(step.get("color"))
    return GRAFANA_COLORS.get(color, color) if color else None


def legend_of(target: dict[str, Any], metric: dict[str, str]) -> str:
    legend = str(target.get("legendFormat") or "")
    for key, value in metric.items():
        legend = legend.replace("{{" + key + "}}", value)
    return legend or ", ".join(f"{k}={v}" for k, v in metric.items()) or str(target["expr"])[:40]


# --- what Prometheus answers ---------------------------------------------------------------------------------

def collect(world: Any, model: dict[str, Any], began: float, end: float, step: float) -> dict[str, Any]:
    """Each panel's answers: stats and tables at the end (instant queries), graphs over the drill, annotations."""
    answers: dict[str, Any] = {}
    for index, panel in enumerate(model["panels"]):
        kind, found = panel.get("type"), []
        for target in panel.get("targets") or []:
            if kind == "timeseries":
                constant = REFERENCE.match(target["expr"])
                for line in world.query_range(target["expr"], began, end, step):
                    found.append({"legend": legend_of(target, line["metric"]), "reference": bool(constant),
                                  "xs": [float(t) - began for t, _ in line["values"]],
                                  "ys": [float(v) for _, v in line["values"]]})
            else:
                for sample in world.prometheus.query(target["expr"]):
                    found.append({"legend": legend_of(target, sample["metric"]), "metric": sample["metric"],
                                  "value": float(sample["value"][1])})
        answers[str(index)] = found
    marks = []
    for annotation in (model.get("annotations") or {}).get("list") or []:
        if not annotation.get("expr"):
            continue
        for line in world.query_range(annotation["expr"], began, end, step):
            metric = {k: v for k, v in line["metric"].items() if k != "__name__"}
            marks.append({"name": annotation.get("name"), "color": annotation.get("iconColor", "orange"),
                          "at": float(line["values"][0][0]) - began, "labels": metric})
    return {"model": model, "answers": answers, "annotations": marks, "seconds": end - began,
            "began": began}


# --- drawing -------------------------------------------------------------------------------------------------

def _panel_box(figure: Any, left: float, top: float, width: float, height: float, title: str,
               subtitle: str = "") -> None:
    from matplotlib.patches import FancyBboxPatch

    W, H = figure.get_size_inches() * DPI
    figure.add_artist(FancyBboxPatch((left / W, 1 - (top + height) / H), width / W, height / H,
                                     boxstyle="round,pad=0,rounding_size=0.002", transform=figure.transFigure,
                                     facecolor=PANEL, edgecolor=BORDER, linewidth=0.8, zorder=-1))
    figure.text((left + 8) / W, 1 - (top + 6) / H, title, ha="left", va="top", color=TEXT, fontsize=9.5,
                fontweight="bold")
    if subtitle:
        figure.text((left + 8) / W, 1 - (top + 22) / H, subtitle, ha="left", va="top", color=MUTED, fontsize=7.5,
                    style="italic")


def _draw_stat(figure: Any, box: tuple[float, float, float, float], panel: dict[str, Any],
               found: list[dict[str, Any]]) -> None:
    left, top, width, height = box
    W, H = figure.get_size_inches() * DPI
    _panel_box(figure, left, top, width, height, panel["title"])
    unit = ((panel.get("fieldConfig") or {}).get("defaults") or {}).get("unit", "")
    if not found:
        figure.text((left + width / 2) / W, 1 - (top + height / 2 + 8) / H, "No data", ha="center", va="center",
                    color=MUTED, fontsize=16)
        return
    for index, sample in enumerate(found):
        middle = left + width * (index + 0.5) / len(found)
        color = threshold_color(panel, sample["value"]) or TEXT
        figure.text(middle / W, 1 - (top + height / 2 + 10) / H, formatted(sample["value"], unit), ha="center",
                    va="center", color=color, fontsize=26 if len(found) == 1 else 18, fontweight="bold")


def _draw_table(figure: Any, box: tuple[float, float, float, float], panel: dict[str, Any],
                found: list[dict[str, Any]]) -> None:
    left, top, width, height = box
    W, H = figure.get_size_inches() * DPI
    _panel_box(figure, left, top, width, height, panel["title"])
    if not found:
        figure.text((left + 12) / W, 1 - (top + 44) / H, "No data", color=MUTED, fontsize=11, va="top")
        return
    # The panel's own "organize" transformation, as Grafana applies it: columns in its order, renamed, and what it
    # excludes (the timestamp, a value that says nothing) left out.
    organize = next((t.get("options") or {} for t in panel.get("transformations") or [] if t.get("id") == "organize"),
                    {})
    order, rename = organize.get("indexByName") or {}, organize.get("renameByName") or {}
    excluded = {k for k, v in (organize.get("excludeByName") or {}).items() if v}
    keys = [k for k in sorted({key for sample in found for key in sample["metric"]} | {"Value"},
                              key=lambda k: (order.get(k, len(order)), k))
            if k not in excluded and k != "__name__"]

    def cell(sample: dict[str, Any], key: str) -> str:
        return f"{sample['value']:g}" if key == "Value" else str(sample["metric"].get(key, ""))
    columns = len(keys)
    for row, cells in enumerate([[rename.get(k, k) for k in keys], *[[cell(s, k) for k in keys] for s in found]]):
        y = top + 36 + row * 26
        for column, cell in enumerate(cells):
            x = left + 14 + (width - 28) * column / columns
            figure.text(x / W, 1 - y / H, cell, ha="left", va="top", fontsize=11 if row else 8.5,
                        color=TEXT if row else MUTED, fontweight="normal" if row else "bold",
                        family="monospace" if row and "release" in keys[column] else None)
        if row == 0:
            figure.add_artist(_hline(figure, left + 10, left + width - 10, y + 17))


def _hline(figure: Any, x0: float, x1: float, y: float) -> Any:
    from matplotlib.lines import Line2D

    W, H = figure.get_size_inches() * DPI
    return Line2D([x0 / W, x1 / W], [1 - y / H, 1 - y / H], transform=figure.transFigure, color=BORDER, linewidth=0.8)


def _coincide(lines: list[dict[str, Any]]) -> bool:
    """Every line on the same samples, within 1 % of the graph's range (rule groups evaluate a moment apart)."""
    if len(lines) < 2:
        return False
    first = lines[0]
    values = [y for y in first["ys"] if not math.isnan(y)]
    span = (max(values) - min(values)) if values else 0.0

    def same(a: float, b: float) -> bool:
        return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 0.01 * span + 1e-12

    return all(line["xs"] == first["xs"] and all(same(a, b) for a, b in zip(line["ys"], first["ys"], strict=True))
               for line in lines[1:])


def _draw_series(figure: Any, box: tuple[float, float, float, float], panel: dict[str, Any],
                 found: list[dict[str, Any]], marks: list[dict[str, Any]], seconds: float) -> None:
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    left, top, width, height = box
    W, H = figure.get_size_inches() * DPI
    defaults = (panel.get("fieldConfig") or {}).get("defaults") or {}
    unit = defaults.get("unit", "")
    lines = [line for line in found if not line["reference"]]
    references = [line for line in found if line["reference"]]
    subtitle = ""
    if _coincide(lines):
        names = [line["legend"] for line in lines]
        subtitle = (f"all {len(lines)} windows ({names[0]} to {names[-1]}) are longer than this drill, so they read "
                    "the same samples: the lines coincide")
        lines = [{**lines[0], "legend": " = ".join(names)}]
    _panel_box(figure, left, top, width, height, panel["title"], subtitle)
    head = 40 if subtitle else 26
    axes = figure.add_axes(((left + 62) / W, 1 - (top + height - 40) / H, (width - 76) / W,
                            (height - head - 40) / H))
    axes.set_facecolor(PANEL)
    axes.set_zorder(1)  # above the panel's box
    for side in axes.spines.values():
        side.set_visible(False)
    axes.grid(True, color=GRID, linewidth=0.6)
    axes.tick_params(colors=MUTED, labelsize=7.5, length=0)
    for index, line in enumerate(lines):
        axes.plot(line["xs"], line["ys"], color=PALETTE[index % len(PALETTE)], linewidth=1.6, label=line["legend"])
    for line in references:
        value = line["ys"][-1]
        name = re.sub(r"^.*\((.+)\)$", r"\1", line["legend"])  # "error budget (SLO)" -> "SLO"
        axes.axhline(value, color=LIMIT, linestyle=(0, (5, 3)), linewidth=1.3)
        axes.annotate(f"{name} {formatted(value, unit)}", (0.005, value), xycoords=("axes fraction", "data"),
                      xytext=(2, 3), textcoords="offset points", color=LIMIT, fontsize=8, fontweight="bold",
                      va="bottom", zorder=4)
    values = [y for line in found for y in line["ys"] if not math.isnan(y)]
    if "min" in defaults or "max" in defaults:
        axes.set_ylim(defaults.get("min"), defaults.get("max"))
    elif values:
        axes.set_ylim(min(0.0, min(values)), max(values) * 1.15 or 1)
    axes.set_xlim(0, seconds)
    for line in references:  # a limit at the top of the graph: its label goes under the line
        label = axes.texts[references.index(line)]
        low, high = axes.get_ylim()
        if (line["ys"][-1] - low) / ((high - low) or 1) > 0.85:
            label.set_position((2, -4))
            label.set_verticalalignment("top")
    for mark in marks:  # Grafana draws an annotation as a dashed line across every graph
        if mark["name"] == "Runbook runs":
            axes.axvline(mark["at"], color=GRAFANA_COLORS.get(mark["color"], mark["color"]), linewidth=1.1,
                         linestyle=(0, (2, 2)), label=_run(mark))
    axes.yaxis.set_major_locator(MaxNLocator(5))
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: tick(value, unit)))
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g} s"))
    if lines:
        handles, labels = axes.get_legend_handles_labels()
        legend = axes.legend(handles, labels, loc="upper left", bbox_to_anchor=(0, -0.13), ncol=len(labels),
                             frameon=False,
                             fontsize=8, labelcolor=TEXT, handlelength=1.4, borderaxespad=0, columnspacing=1.5)
        legend.set_in_layout(False)


def _run(mark: dict[str, Any]) -> str:
    labels = mark.get("labels") or {}
    return f"{labels.get('runbook', 'runbook')} run ({labels.get('outcome', '?')})"


def draw(data: dict[str, Any], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, answers, marks, seconds = data["model"], data["answers"], data["annotations"], data["seconds"]
    panels = model["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    height = HEADER_PX + rows * UNIT_PX + FOOTER_PX
    figure = plt.figure(figsize=(WIDTH_PX / DPI, height / DPI), dpi=DPI, facecolor=BACKGROUND)
    W, H = WIDTH_PX, height
    margin, column = 10, (WIDTH_PX - 20) / 24
    figure.text(margin / W, 1 - 10 / H, model["title"], ha="left", va="top", color=TEXT, fontsize=14,
                fontweight="bold")
    tags = " · ".join(model.get("tags") or [])
    run = [m for m in marks if m["name"] == "Runbook runs"]
    when = f"; the {_run(run[0])} at {run[0]['at']:.0f} s" if run else ""
    figure.text(margin / W, 1 - 34 / H,
                f"{tags} · the last {seconds:.0f} s of a drill (x: seconds into it{when}) · every rate window "
                "(5m and longer) is longer than the drill, so rates climb while their window fills",
                ha="left", va="top", color=MUTED, fontsize=8.5)
    for index, panel in enumerate(panels):
        grid = panel["gridPos"]
        left, top = margin + grid["x"] * column, HEADER_PX + grid["y"] * UNIT_PX
        width, box_height = grid["w"] * column, grid["h"] * UNIT_PX
        box = (left + 3, top + 3, width - 6, box_height - 6)
        found = answers.get(str(index), [])
        if panel.get("type") == "row":
            figure.text((left + 2) / W, 1 - (top + UNIT_PX / 2) / H, f"⌄ {panel['title']}", ha="left",
                        va="center", color=TEXT, fontsize=10.5, fontweight="bold")
        elif panel.get("type") == "stat":
            _draw_stat(figure, box, panel, found)
        elif panel.get("type") == "table":
            _draw_table(figure, box, panel, found)
        elif panel.get("type") == "timeseries":
            _draw_series(figure, box, panel, found, marks, seconds)
    figure.text(0.5, 10 / H, CAPTION, ha="center", va="bottom", color=MUTED, fontsize=8.5, style="italic")
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, dpi=DPI, facecolor=BACKGROUND)
    plt.close(figure)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/dashboard-service-overview.png")
    parser.add_argument("--seconds", type=float, default=90, help="traffic before and after the rollback, each half")
    parser.add_argument("--save-data", type=Path, help="also write what Prometheus answered here (JSON)")
    parser.add_argument("--from-data", type=Path, help="draw from a --save-data file instead of running a drill")
    args = parser.parse_args()
    if args.from_data:
        draw(json.loads(args.from_data.read_text()), Path(args.out))
        print(f"written {args.out}")
        return 0

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
        data = collect(world, board.model, began, end, 1)
    finally:
        world.stop()
    if args.save_data:
        args.save_data.write_text(json.dumps(data))
    draw(data, Path(args.out))
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
