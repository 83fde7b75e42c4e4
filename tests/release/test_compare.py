"""`llmops release compare` on recorded request logs (tests/release/fixtures/shadow): the join, the figures worked
out by hand below, the gates from the model's rollout.shadow, the exit codes, the metrics as pushed -- and no prompt
or answer text in any output.

The fixtures, window 2025-12-31T23:00Z .. 2026-01-01T00:00Z, model chat-small (primary release a1b2c3d4e5f60718,
track stable; shadow release 0f1e2d3c4b5a6978):

    request  primary tokens / ms / refuses   shadow tokens / ms / refuses
    r1       100 /  400 / no                 120 /  450 / no
    r2       200 /  500 / no                 260 /  700 / no   (+ a duplicate shadow record, dropped)
    r3        50 /  300 / no                  50 /  250 / no
    r4         0 /  200 / no                  10 /  300 / no
    r5       150 /  900 / yes                150 / 1000 / yes
    r6       100 /  600 / no (Fluent Bit)    140 / 1400 / yes
    r7        80 /  350 (not mirrored)        -
    r9        -                               30 /  300 (its primary record is missing)
    also: r8 before the window, a record of model chat, a line that is not JSON, r10 with latency_ms "slow".

6 pairs. Tokens: shadow 120+260+50+10+150+140 = 730 over primary 100+200+50+0+150+100 = 600 = 1.21667 (+21.7 %);
per-pair ratios without r4 (primary 0): 1.2, 1.3, 1.0, 1.0, 1.4 -> mean 5.9 / 5 = 1.18.
Latency, nearest rank over 6: primary sorted 0.2 0.3 0.4 0.5 0.6 0.9 -> p50 the 3rd (0.4), p95 and p99 the 6th (0.9);
shadow sorted 0.25 0.3 0.45 0.7 1.0 1.4 -> p50 0.45, p95 and p99 1.4; 1.4 / 0.9 = 1.56x.
Refusals: primary 1/6, shadow 2/6 -> +16.67 points.
Counts: 15 records in the window (7 primary r1-r7, 8 shadow with the duplicate), 1 outside, 1 invalid, 1 duplicate,
1 shadow unmatched (r9), 1 primary unmatched (r7).
"""

from __future__ import annotations

import json

import pytest

from llmops.cli import main
from tests.release.shadow_world import END, FIXTURES, Judge, environment, fixture_texts, judge_server

PRIMARY, SHADOW = "a1b2c3d4e5f60718", "0f1e2d3c4b5a6978"


@pytest.fixture
def env(tmp_path, stack_yaml, monkeypatch):
    def make(**shadow):
        directory = tmp_path / f"world{len(list(tmp_path.glob('world*')))}"
        directory.mkdir()
        monkeypatch.setenv("LLMOPS_TARGETS_DIR", str(environment(directory, stack_yaml, shadow)))
        monkeypatch.setenv("LLMOPS_JUDGE_CALIBRATIONS", str(tmp_path / "calibrations"))
    make()
    return make


def compare(capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["release", "compare", "--env", "shadowtest", "--model", "chat-small", "--window", "1h",
                 "--end", END, *extra])
    out, err = capsys.readouterr()
    return code, out, err


def assert_no_text(*outputs: str) -> None:
    for text in fixture_texts():
        for output in outputs:
            assert text not in output, "a prompt or an answer reached an output"
    for output in outputs:
        assert "jane.doe" not in output and "555 0100" not in output


def test_the_recorded_logs_give_the_hand_computed_figures(env, capsys):
    code, out, err = compare(capsys, "--output", "json")
    document = json.loads(out)
    assert code == 1, err
    assert (document["records"], document["primary_records"], document["shadow_records"]) == (15, 7, 7)
    assert (document["shadow_unmatched"], document["primary_unmatched"], document["duplicates"]) == (1, 1, 1)
    assert document["invalid"] == {"latency_ms": 1}
    (c,) = document["comparisons"]
    assert (c["release"], c["shadow_release"], c["primary_tracks"], c["pairs"]) == (PRIMARY, SHADOW, ["stable"], 6)
    assert c["token_ratio"] == pytest.approx(730 / 600)
    assert c["token_ratio_pair_mean"] == pytest.approx(1.18) and c["token_ratio_pairs"] == 5
    assert (c["primary"]["completion_tokens"], c["shadow"]["completion_tokens"]) == (600, 730)
    assert c["primary"]["latency_seconds"] == {"0.5": 0.4, "0.95": 0.9, "0.99": 0.9}
    assert c["shadow"]["latency_seconds"] == {"0.5": 0.45, "0.95": 1.4, "0.99": 1.4}
    assert (c["primary"]["refusals"], c["shadow"]["refusals"]) == (1, 2)
    assert c["shadow"]["refusal_rate"] - c["primary"]["refusal_rate"] == pytest.approx(1 / 6)
    assert {g["name"]: g["passed"] for g in c["gates"]} == {"pairs": True, "tokens": False, "latency": False,
                                                            "refusals": False}
    assert document["verdict"] == "refuse promotion" and c["judge"] is None
    assert_no_text(out, err)


def test_refusing_promotion_names_each_failed_gate_with_its_figure_and_limit(env, capsys):
    code, out, err = compare(capsys)
    assert code == 1, err
    verdict = out.splitlines()[-1]
    assert verdict.startswith("verdict: refuse promotion: ")
    assert "tokens +21.7 % (limit +15 %)" in verdict
    assert "latency p95 1.400 s, 1.56x (limit 1.2x the primary's 0.900 s)" in verdict
    assert "refusals +16.7 points (33.3 % vs 16.7 %; limit +2 points)" in verdict
    assert "pairs 6" not in verdict  # it passed
    assert "ok   pairs 6 (limit at least 5)" in out
    assert "shadow 730 / primary 600 = 1.217 (ratio of sums: gated); mean of per-pair ratios 1.180 over 5 pairs" in out
    assert "primary latency p50/p95/p99 0.400/0.900/0.900 s; refusals 1/6 (16.7 %, refusal-v1)" in out
    assert_no_text(out, err)


def test_the_models_own_gates_make_the_same_figures_promotable(env, capsys):
    env(maxTokenIncrease=0.25, latencyP95Ratio=1.6, maxRefusalIncrease=0.2)
    code, out, err = compare(capsys)
    assert code == 0, out + err
    assert out.splitlines()[-1] == "verdict: promotable"
    assert "ok   tokens +21.7 % (limit +25 %)" in out


def test_a_latency_limit_in_seconds_passes_a_shadow_slower_than_the_ratio(env, capsys):
    env(latencyP95MaxSeconds=1.5)
    code, out, _ = compare(capsys)
    assert code == 1 and "ok   latency p95 1.400 s, 1.56x (limit 1.2x the primary's 0.900 s or 1.5 s)" in out


def test_too_few_pairs_refuse_promotion(env, capsys):
    env(minPairs=100, maxTokenIncrease=1, latencyP95Ratio=2, maxRefusalIncrease=1)
    code, out, _ = compare(capsys)
    assert code == 1 and out.splitlines()[-1] == "verdict: refuse promotion: pairs 6 (limit at least 100)"


def test_a_bad_gate_in_the_stack_file_is_bad_input(env, capsys):
    env(maxTokenIncrease=-1)
    code, _, err = compare(capsys)
    assert code == 2 and "maxTokenIncrease" in err


@pytest.mark.parametrize("arguments,named", [
    (["--window", "1x"], "--window '1x': expected a duration such as 30m, 1h or 2d"),
    (["--window", "0h"], "--window '0h'"),
    (["--end", "2025-06-01T00:00:00Z"], "--window 1h: no request-log records of model chat-small between "
                                        "2025-05-31T23:00:00Z and 2025-06-01T00:00:00Z"),
    (["--model", "nope"], "--model 'nope': no such model in Pulumi.shadowtest.yaml; models: chat-small"),
    (["--from", "/nonexistent/logs/"], "--from /nonexistent/logs/: no such file or directory"),
    (["--from", str(FIXTURES / "primary.jsonl")], "--window 1h: no shadow records of model chat-small"),
    (["--env", "../x"], "--env '../x'"),
    (["--judge", "ftp://judge"], "--judge: expected an http(s) URL"),
    (["--judge", "http://127.0.0.1:9", "--judge-spec", "nope-v9"], "--judge-spec: "),
])
def test_bad_input_exits_2_naming_the_parameter(env, capsys, arguments, named):
    base = {"--window": "1h", "--model": "chat-small", "--env": "shadowtest", "--end": END}
    options = dict(base, **dict(zip(arguments[::2], arguments[1::2], strict=True)))
    code = main(["release", "compare", *[word for pair in options.items() for word in pair]])
    out, err = capsys.readouterr()
    assert code == 2, out + err
    assert named in err and out == ""
    assert_no_text(out, err)


def test_the_metrics_reach_a_real_pushgateway_without_text(env, capsys):
    from llmops.drill.backends import PushgatewayServer

    try:
        gateway = PushgatewayServer().start()
    except RuntimeError as error:
        pytest.fail(str(error))
    try:
        code, out, err = compare(capsys, "--pushgateway", gateway.url, "--show-metrics")
        metrics = gateway.metrics()
    finally:
        gateway.stop()
    assert code == 1, err
    key = {"job": "llmops_shadow_compare", "model": "chat-small", "release": PRIMARY, "shadow_release": SHADOW}

    def value(name: str, **extra: str) -> float:
        from prometheus_client.parser import text_string_to_metric_families

        (found,) = [s.value for family in text_string_to_metric_families(metrics) for s in family.samples
                    if s.name == name and s.labels.items() >= {**key, **extra}.items()]
        return float(found)

    assert value("llmops_shadow_pairs") == 6
    assert value("llmops_shadow_token_ratio") == pytest.approx(730 / 600)
    assert value("llmops_shadow_latency_seconds", quantile="0.95", side="shadow") == 1.4
    assert value("llmops_shadow_latency_seconds", quantile="0.5", side="primary") == 0.4
    assert value("llmops_shadow_refusal_ratio", side="shadow") == pytest.approx(2 / 6)
    assert value("llmops_shadow_gate_passed", gate="tokens") == 0
    assert value("llmops_shadow_verdict") == 0
    assert "llmops_shadow_judge_win_rate{" not in metrics  # no judge ran
    assert "llmops_shadow_unmatched{" in metrics and "llmops_shadow_compare_timestamp_seconds{" in metrics
    assert "# TYPE llmops_shadow_token_ratio gauge" in out  # --show-metrics prints what was pushed
    assert_no_text(out, err, metrics)


def test_an_unreachable_pushgateway_exits_5_after_the_verdict(env, capsys):
    import socket

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    try:
        code, out, err = compare(capsys, "--pushgateway", f"http://127.0.0.1:{closed.getsockname()[1]}")
    finally:
        closed.close()
    assert code == 5 and "verdict: refuse promotion" in out and "could not push" in err


# --- the judge -------------------------------------------------------------------------------------------------------

def calibrate(capsys, url: str, *extra: str) -> tuple[int, str, str]:
    code = main(["release", "calibrate-judge", "--judge", url, *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_judge_below_the_agreement_limit_is_refused_and_its_score_does_not_gate(env, capsys, tmp_path):
    judge = Judge("always-a")
    with judge_server(judge) as url:
        # always A on the shipped set (8 a, 8 b, 4 tie): agreement 8/20 = 0.4, chance agreement 0.4 * 1 = 0.4,
        # kappa (0.4 - 0.4) / (1 - 0.4) = 0
        code, out, err = calibrate(capsys, url, "--output", "json")
        record = json.loads(out)
        assert code == 1, err
        assert (record["agreement"], record["kappa"], record["calibrated"], record["items"]) == (0.4, 0.0, False, 20)
        assert record["judge_version"] == "pairwise-v1" and record["endpoint_model"] == "judge-8b"
        code, out, err = compare(capsys, "--judge", url, "--sample", "6")
    assert code == 1, err
    assert "not calibrated: kappa 0.00 below 0.60 (40% agreement" in out and ": does not gate" in out
    assert "judge win rate" not in out  # no quality gate line
    assert len(judge.requests) == 20 + 6
    assert_no_text(out, err)


def test_a_calibrated_judge_gates_on_the_upper_bound_of_the_win_rate(env, capsys):
    env(maxTokenIncrease=0.25, latencyP95Ratio=1.6, maxRefusalIncrease=0.2)  # only quality can refuse
    judge = Judge("oracle", failures=[503, 429])  # two retries, then answers
    with judge_server(judge) as url:
        code, out, err = calibrate(capsys, url)
        assert code == 0, out + err
        assert "agreement 100.0% and Cohen's kappa 1.000 on 20 labelled pairs" in out
        code, out, err = compare(capsys, "--judge", url, "--sample", "6", "--output", "json")
    assert code == 0, err
    (c,) = json.loads(out)["comparisons"]
    # The stub names the longer answer: r1, r2, r5 and r6 lose (shadow shorter), r3 ties ("Blue." both), r4 wins
    # (shadow "Sure." against an empty answer): win rate (1 + 1/2) / 6 = 0.25. Wilson, z = 1.96, n = 6, p = 0.25:
    # centre (0.25 + 0.32012) / 1.64025 = 0.34758, half-width 1.95996 * sqrt(0.03125 + 0.026677) / 1.64025 = 0.28759
    # -> [0.0600, 0.6352]: six pairs cannot show the shadow is worse, so the gate (upper >= 0.5) passes.
    j = c["judge"]
    assert (j["wins"], j["ties"], j["losses"], j["unparsed"], j["sampled"]) == (1, 1, 4, 0, 6)
    assert j["win_rate"] == 0.25 and j["gates"] is True
    assert j["low"] == pytest.approx(0.05999, abs=1e-4) and j["high"] == pytest.approx(0.63518, abs=1e-4)
    assert [g for g in c["gates"] if g["name"] == "quality"][0]["passed"] is True
    assert_no_text(out, err)


def test_the_judge_sample_is_seeded(env, capsys):
    judge = Judge("always-a")
    with judge_server(judge) as url:
        runs = [json.loads(compare(capsys, "--judge", url, "--sample", "4", "--seed", seed, "--output", "json")[1])
                for seed in ("7", "7", "8")]
    judged = [r["comparisons"][0]["judge"] for r in runs]
    assert judged[0] == judged[1]
    assert [m["messages"][-1]["content"] for m in judge.requests[:4]] == \
        [m["messages"][-1]["content"] for m in judge.requests[4:8]]


def test_a_judge_that_keeps_failing_is_named_without_the_text_it_echoed(env, capsys):
    judge = Judge("oracle", failures=[500] * 4)
    with judge_server(judge) as url:
        code, out, err = compare(capsys, "--judge", url, "--sample", "2")
    assert code == 1 and out == ""
    assert "judge http://127.0.0.1:" in err and "HTTP 500 after 4 attempts; nothing pushed" in err
    assert_no_text(out, err)


def test_request_logs_on_s3_are_read_by_the_windows_hours_only(aws_env, tmp_path, stack_yaml, capsys, monkeypatch):
    """Fluent Bit's layout (<prefix>YYYY/MM/DD/HH/*.jsonl.gz) on moto's S3, found through the targets' request_logs:
    the window's hours (and one either side) are listed and read, not the whole prefix -- an object of three hours
    earlier, whose records would count as invalid if read, is not."""
    import gzip

    import boto3
    import yaml

    s3 = boto3.client("s3", endpoint_url=aws_env, region_name="us-east-1")
    s3.create_bucket(Bucket="request-logs")
    for name in ("primary", "shadow"):
        body = gzip.compress((FIXTURES / f"{name}.jsonl").read_bytes())
        s3.put_object(Bucket="request-logs", Key=f"requests/2025/12/31/23/{name}.jsonl.gz", Body=body)
    stale = json.dumps({"ts": 1767225000, "model": "chat-small", "track": "stable", "release": PRIMARY,
                        "request_id": "old", "prompt_tokens": 1, "completion_tokens": 1, "latency_ms": "slow"})
    s3.put_object(Bucket="request-logs", Key="requests/2025/12/31/20/old.jsonl.gz", Body=gzip.compress(stale.encode()))
    targets = environment(tmp_path, stack_yaml)
    document = yaml.safe_load((targets / "shadowtest.yaml").read_text())
    document.update({"request_logs": "s3://request-logs/requests/",
                     "aws": {"region": "us-east-1", "endpoint_url": aws_env}})
    (targets / "shadowtest.yaml").write_text(yaml.safe_dump(document))
    monkeypatch.setenv("LLMOPS_TARGETS_DIR", str(targets))
    code, out, err = compare(capsys, "--output", "json")
    found = json.loads(out)
    assert code == 1, err
    assert (found["records"], found["primary_records"], found["shadow_records"]) == (15, 7, 7)
    assert found["invalid"] == {"latency_ms": 1}  # the fixture's own one; the stale object was never read
    assert found["comparisons"][0]["pairs"] == 6
