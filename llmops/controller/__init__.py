"""The release controller: online signals -> a decision -> an action, automatically and audited.

`signals` reads canary and stable over the same window from Prometheus; `llmops.release` judges them against the
model's rollout policy; `controller` acts through the runbook engine (rollback-canary, promote) or pauses for review,
and records every decision with its evidence.
"""
