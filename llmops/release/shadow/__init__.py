"""Shadow releases compared with the primary: request-log records of the stable or canary release and of the
`<model>-shadow` Deployment (which answers a mirrored sample of the same requests) joined by request id, the
figures of each side (tokens, latency, refusals, an optional calibrated judge), the gates a shadow release must pass
before its canary may start, and the metrics `llmops release compare` pushes.

Unlike the canary analysis beside it (pure), this package does I/O: the judge's HTTP, calibration records, the
Pushgateway. Prompt and answer text is read to detect refusals and to ask the judge, then dropped: no figure, error,
metric or record here holds any of it.
"""
