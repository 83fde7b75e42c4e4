"""The verdict on a shadow release: each gate of the model's `rollout.shadow` section (components/config/rollout.py,
defaults when unset) against the figures of each pair of releases compared. Promotable only when every gate of every
pair passes; a judge's score gates only when the judge is calibrated (otherwise it is reported, marked so)."""

from __future__ import annotations

from dataclasses import dataclass

from components.config.rollout import ShadowGates
from llmops.release.shadow.compare import Figures
from llmops.release.shadow.judge import JudgeResult, Standing


@dataclass(frozen=True)
class Gate:
    name: str  # pairs | tokens | latency | refusals | quality
    passed: bool
    figure: float | None  # the gated figure (None: not measured)
    limit: float
    text: str  # `tokens +22.0 % (limit +15 %)`: numbers only


def _percent(value: float) -> str:
    return f"{value * 100:+.1f} %"


def evaluate(figures: Figures, gates: ShadowGates, judge: JudgeResult | None = None,
             judge_standing: Standing | None = None) -> list[Gate]:
    found: list[Gate] = []
    found.append(Gate("pairs", figures.pairs >= gates.min_pairs, float(figures.pairs), float(gates.min_pairs),
                      f"pairs {figures.pairs} (limit at least {gates.min_pairs})"))
    limit = f"(limit {gates.max_token_increase * 100:+g} %)"
    if figures.token_ratio is None:
        found.append(Gate("tokens", False, None, gates.max_token_increase,
                          f"tokens: the primary's answers have no completion tokens to compare with {limit}"))
    else:
        increase = figures.token_ratio - 1
        found.append(Gate("tokens", increase <= gates.max_token_increase + 1e-12, increase, gates.max_token_increase,
                          f"tokens {_percent(increase)} {limit}"))
    shadow_p95, primary_p95 = figures.shadow.latency_seconds[0.95], figures.primary.latency_seconds[0.95]
    ratio = shadow_p95 / primary_p95 if primary_p95 > 0 else (1.0 if shadow_p95 == 0 else float("inf"))
    within_ratio = shadow_p95 <= gates.latency_p95_ratio * primary_p95 + 1e-12
    within_max = gates.latency_p95_max_seconds is not None and shadow_p95 <= gates.latency_p95_max_seconds
    allowed = f"limit {gates.latency_p95_ratio:g}x the primary's {primary_p95:.3f} s"
    if gates.latency_p95_max_seconds is not None:
        allowed += f" or {gates.latency_p95_max_seconds:g} s"
    found.append(Gate("latency", within_ratio or within_max, ratio, gates.latency_p95_ratio,
                      f"latency p95 {shadow_p95:.3f} s, {ratio:.2f}x ({allowed})"))
    points = figures.shadow.refusal_rate - figures.primary.refusal_rate
    found.append(Gate("refusals", points <= gates.max_refusal_increase + 1e-12, points, gates.max_refusal_increase,
                      f"refusals {points * 100:+.1f} points ({figures.shadow.refusal_rate * 100:.1f} % vs "
                      f"{figures.primary.refusal_rate * 100:.1f} %; limit {gates.max_refusal_increase * 100:+g} points)"))
    calibrated = judge_standing is not None and judge_standing.gates
    if judge is not None and calibrated and judge.high is not None:
        assert judge.win_rate is not None and judge.low is not None
        found.append(Gate("quality", judge.high >= gates.min_judge_win_upper, judge.high, gates.min_judge_win_upper,
                          f"judge win rate {judge.win_rate:.2f} [{judge.low:.2f}, {judge.high:.2f}] over "
                          f"{judge.judged} pairs (limit: upper bound at least {gates.min_judge_win_upper:.2f})"))
    elif gates.require_judge:
        why = "no judge ran" if judge is None else (judge_standing.reason if judge_standing and not calibrated
                                                     else "no verdict could be parsed")
        found.append(Gate("quality", False, None, gates.min_judge_win_upper,
                          f"quality: a calibrated judge is required ({why})"))
    return found


def promotable(gates: list[Gate]) -> bool:
    return all(gate.passed for gate in gates)
