"""On-call drills on real local backends (MLflow's store, a Kubernetes API, Prometheus, moto).

The same worlds back the runbook tests and benchmarks; `llmops drill rollback` runs one for people.
"""
