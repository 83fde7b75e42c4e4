"""Adapters: one module per backend, each behind the small interface a runbook declares.

These are the only modules under runbooks/ that import boto3, kubernetes or mlflow.
"""
