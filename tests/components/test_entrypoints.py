"""The programs our containers run, against real backends: Secrets Manager (moto's server) and MLflow's store."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys

import boto3
import pytest
from alembic import command
from mlflow.store.db import utils

from components.entrypoints import DIRECTORY
from components.entrypoints.mlflow_migrate import migrate

SECRET_EXEC = str(DIRECTORY / "secret_exec.py")


@pytest.fixture
def db_secret(aws_env):
    client = boto3.client("secretsmanager", endpoint_url=aws_env)
    name = f"rds-db-{os.urandom(4).hex()}"
    arn = client.create_secret(Name=name, SecretString=json.dumps({"username": "mlflow", "password": "p@ss:w/rd"}))["ARN"]
    return arn


def run_secret_exec(endpoint, *args):
    env = {**os.environ, "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint}
    return subprocess.run([sys.executable, SECRET_EXEC, *args], env=env, capture_output=True, text=True, timeout=60)


def test_secret_exec_hands_the_secret_to_the_command_and_prints_nothing_of_it(aws_env, db_secret):
    result = run_secret_exec(aws_env, "--secret-arn", db_secret, "--env", "PGPASSWORD=password", "--",
                             sys.executable, "-c", "import os; print(os.environ['PGPASSWORD'] == 'p@ss:w/rd')")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
    assert "p@ss" not in result.stderr


def test_secret_exec_refuses_a_missing_key_without_running_the_command(aws_env, db_secret):
    result = run_secret_exec(aws_env, "--secret-arn", db_secret, "--env", "X=token", "--", sys.executable, "-c", "print('ran')")
    assert result.returncode == 2 and "ran" not in result.stdout
    assert "has no key 'token'" in result.stderr


def test_secret_exec_reports_an_unreadable_secret_by_kind_only(aws_env):
    missing = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-abc123"
    result = run_secret_exec(aws_env, "--secret-arn", missing, "--env", "X=password", "--", "true")
    assert result.returncode == 1
    assert result.stderr.startswith(f"secret_exec: cannot read secret {missing}: ")


def test_migration_initialises_an_empty_database_then_does_nothing(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    head = utils._get_latest_schema_revision()
    assert migrate(uri) == f"initialised at {head}"
    assert migrate(uri) == f"up to date at {head}"
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    client.create_registered_model("works")  # the schema is the one this MLflow expects
    assert client.get_registered_model("works").name == "works"


def test_migration_upgrades_a_database_at_an_older_revision(tmp_path):
    uri = f"sqlite:///{tmp_path}/old.db"
    engine = utils.create_sqlalchemy_engine_with_retry(uri)
    config = utils._get_alembic_config(uri)
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(config)
    head = script.get_current_head()
    older = script.get_revision(script.get_revision(head).down_revision).down_revision
    utils.InitialBase.metadata.create_all(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, older)
    assert utils._get_schema_version(engine) == older
    engine.dispose()
    assert migrate(uri) == f"upgraded from {older} to {head}"
    assert migrate(uri) == f"up to date at {head}"


def test_migration_refuses_a_database_that_is_not_mlflows(tmp_path):
    path = tmp_path / "other.db"
    connection = sqlite3.connect(path)
    connection.execute("CREATE TABLE invoices (id INTEGER)")
    connection.commit()
    connection.close()
    with pytest.raises(RuntimeError, match="has tables but no MLflow schema revision"):
        migrate(f"sqlite:///{path}")
    assert sqlite3.connect(path).execute("SELECT name FROM sqlite_master").fetchall() == [("invoices",)]
