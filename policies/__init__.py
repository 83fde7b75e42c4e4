"""The llmops CrossGuard policy pack: policies by domain, in importable modules.

The Pulumi CLI installs this folder alone (policies/requirements.txt, in a venv of its own): nothing here imports
project code or reads a file outside it, and what a policy checks against comes from its config.
`policies/__main__.py` is the only place a `PolicyPack` is built (constructing one starts a gRPC server and
blocks); our offline `llmops policy check` uses `policies.pack.POLICIES`.
"""
