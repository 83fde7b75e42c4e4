"""Personal data and secrets in inference logs: detectors, a streaming scanner, a labelled corpus.

Work in progress for the PII issue: the redactor, the `llmops pii` commands, the benchmark against
Presidio and the pii-incident runbook build on these modules.
"""
