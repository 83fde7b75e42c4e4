"""The llmops CrossGuard policy pack: policies by domain, in importable modules.

`policies/__main__.py` is the only place a `PolicyPack` is built (constructing one starts a
gRPC server and blocks); everything else -- the Pulumi CLI's policy host and our offline
`llmops policy check` -- uses `policies.pack.POLICIES`.
"""
