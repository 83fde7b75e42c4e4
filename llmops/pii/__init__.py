"""Personal data and secrets in inference logs: detectors, a streaming scanner, a redactor, the metrics a scan
pushes, and a labelled corpus -- one library behind `llmops pii`, the pii-incident runbook and
scripts/bench_pii.py, so a finding means the same wherever it is made.
"""
