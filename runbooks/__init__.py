"""Executable runbooks for on-call: the engine (`engine/`), the procedures themselves (rollback, failover,
reindex, pii-incident), the ports they reach the world through (`ports.py`) and the adapters that implement
those ports against real backends (`adapters/`)."""
