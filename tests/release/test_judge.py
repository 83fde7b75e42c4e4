"""The judge's arithmetic and its HTTP client: Wilson bounds and Cohen's kappa against hand-worked values, the
quality gate on the upper bound, retries with backoff on 429/5xx only, and errors that never carry text."""

from __future__ import annotations

import pytest

from components.config.rollout import ShadowGates
from llmops.release.shadow.compare import Half, Pair, figures, quantile
from llmops.release.shadow.gates import evaluate
from llmops.release.shadow.judge import (
    JudgeClient,
    JudgeError,
    JudgeResult,
    Standing,
    cohen_kappa,
    endpoint,
    load_judge,
    wilson,
)
from tests.release.shadow_world import Judge, judge_server


def test_wilson_matches_the_formula_worked_by_hand():
    # n = 20, 10 successes: centre 0.5, half-width 1.96 * sqrt(0.0125 + 0.0024) / 1.19207 = 0.20070
    low, high = wilson(10, 20)
    assert low == pytest.approx(0.29930, abs=1e-4) and high == pytest.approx(0.70070, abs=1e-4)
    assert wilson(0, 5)[0] == 0.0 and wilson(5, 5)[1] == 1.0


def test_cohen_kappa_worked_by_hand():
    # 10 items, agreement 8/10; rater one a:5 b:5, rater two a:5 b:5 -> chance 0.5; kappa (0.8 - 0.5) / 0.5 = 0.6
    one = list("aaaaabbbbb")
    two = list("aaaabbbbba")
    assert cohen_kappa(one, two) == pytest.approx(0.6)
    assert cohen_kappa(one, one) == 1.0
    assert cohen_kappa(one, ["a"] * 10) == 0.0


def test_quantiles_are_nearest_rank():
    values = [0.2, 0.3, 0.4, 0.5, 0.6, 0.9]
    assert (quantile(values, 0.5), quantile(values, 0.95), quantile(values, 0.99)) == (0.4, 0.9, 0.9)
    assert quantile([1.0], 0.5) == 1.0


def _figures():
    half = Half("r1", "stable", 0, 10, 0.5, False)
    return figures("r1", "r2", [Pair(f"q{i}", half, Half("r2", "shadow", 0, 10, 0.5, False)) for i in range(30)])


def result(wins, losses, ties=0):
    n = wins + losses + ties
    low, high = wilson(wins + ties / 2, n)
    return JudgeResult("pairwise-v1", "m", n, wins, losses, ties, 0, (wins + ties / 2) / n, low, high, 0)


def test_a_calibrated_judge_refuses_a_shadow_clearly_worse_and_an_uncalibrated_one_does_not():
    gates, worse = ShadowGates(minPairs=10), result(2, 18)  # 0.1, Wilson [0.028, 0.301]: upper below 0.5
    calibrated, uncalibrated = Standing(True, "calibrated", None), Standing(False, "not calibrated", None)
    (quality,) = [g for g in evaluate(_figures(), gates, worse, calibrated) if g.name == "quality"]
    assert not quality.passed
    assert quality.text == "judge win rate 0.10 [0.03, 0.30] over 20 pairs (limit: upper bound at least 0.50)"
    assert [g.name for g in evaluate(_figures(), gates, worse, uncalibrated)] == ["pairs", "tokens", "latency",
                                                                                "refusals"]
    required = evaluate(_figures(), ShadowGates(minPairs=10, requireJudge=True), worse, uncalibrated)
    assert [g.text for g in required if not g.passed] == ["quality: a calibrated judge is required (not calibrated)"]


def test_the_judge_url_may_be_a_base_or_the_full_path():
    assert endpoint("http://judge:8000") == "http://judge:8000/v1/chat/completions"
    assert endpoint("http://judge:8000/v1/") == "http://judge:8000/v1/chat/completions"
    assert endpoint("https://judge/v1/chat/completions") == "https://judge/v1/chat/completions"
    with pytest.raises(ValueError):
        endpoint("judge:8000")


def test_retries_back_off_on_429_and_5xx_and_give_up_naming_only_the_status():
    spec = load_judge()
    waits: list[float] = []
    judge = Judge(failures=[429, 503, 502, 500])
    with judge_server(judge) as url:
        client = JudgeClient(url, "judge-8b", sleep=waits.append)
        with pytest.raises(JudgeError) as raised:
            client.ask(spec.messages("secret prompt text", "answer one", "answer two"), 8, 0)
    assert str(raised.value).endswith(": HTTP 500 after 4 attempts")
    assert "secret" not in str(raised.value) and "answer" not in str(raised.value)
    assert waits == [0.5, 1.0, 2.0]


def test_a_client_error_is_not_retried():
    spec = load_judge()
    waits: list[float] = []
    judge = Judge(failures=[400])
    with judge_server(judge) as url:
        with pytest.raises(JudgeError, match=r"HTTP 400$"):
            JudgeClient(url, None, sleep=waits.append).ask(spec.messages("p", "a", "b"), 8, 0)
    assert waits == [] and len(judge.requests) == 1 and "model" not in judge.requests[0]


def test_an_unreachable_judge_is_named():
    import socket

    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    try:
        client = JudgeClient(f"http://user:pw@127.0.0.1:{closed.getsockname()[1]}", "m", attempts=2,
                             sleep=lambda _: None)
        with pytest.raises(JudgeError) as raised:
            client.ask([{"role": "user", "content": "x"}], 8, 0)
    finally:
        closed.close()
    assert "after 2 attempts" in str(raised.value) and "pw" not in str(raised.value)


def test_the_parse_rule():
    spec = load_judge()
    assert [spec.parse(r) for r in ("A", " b.", "TIE", "**A**", "Answer A", "I think")] == \
        ["a", "b", "tie", "a", None, None]
