"""Executable runbooks for on-call: the engine, the backend adapters and the procedures themselves.

Empty until the runbook engine lands; the folder exists so the layout is the one the
project is meant to have.
"""
