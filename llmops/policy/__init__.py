"""Run the CrossGuard pack (policies/) offline over captured plans, with the engine's semantics."""
