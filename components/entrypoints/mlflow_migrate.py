"""Bring an MLflow backend store to this MLflow version's schema: idempotent, safe to re-run.

    python mlflow_migrate.py DATABASE_URI

- an empty database is initialised (tables created, then stamped at the head revision);
- a database at an older revision is upgraded;
- a database already at the head revision is left alone;
- a database with tables but no MLflow revision is refused (it is not an MLflow store).
On PostgreSQL an advisory lock makes concurrent runs wait for each other.
Prints one line saying what it did. Exit 0 done, 1 refused or failed.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

import sqlalchemy
from mlflow.store.db import utils

# An arbitrary, fixed key: every migrator of every MLflow database on the server agrees on it.
ADVISORY_LOCK_KEY = 727_364_001


@contextlib.contextmanager
def _exclusive(engine: sqlalchemy.engine.Engine) -> Iterator[None]:
    if engine.dialect.name != "postgresql":
        yield
        return
    with engine.connect() as connection:
        connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": ADVISORY_LOCK_KEY})
        try:
            yield
        finally:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": ADVISORY_LOCK_KEY})


def migrate(uri: str) -> str:
    """Do what the database needs; return what was done."""
    engine = utils.create_sqlalchemy_engine_with_retry(uri)
    try:
        with _exclusive(engine):
            head = utils._get_latest_schema_revision()
            current = utils._get_schema_version(engine)
            if current is None:
                if not utils._is_empty_database(engine):
                    raise RuntimeError("the database has tables but no MLflow schema revision; refusing to touch it")
                utils._initialize_tables(engine)
                return f"initialised at {head}"
            if current == head:
                return f"up to date at {head}"
            utils._upgrade_db(engine)
            return f"upgraded from {current} to {head}"
    finally:
        engine.dispose()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: mlflow_migrate.py DATABASE_URI", file=sys.stderr)
        return 1
    try:
        print(f"mlflow_migrate: {migrate(argv[0])}")
    except Exception as error:  # noqa: BLE001 - the Job's log is where the engineer looks
        print(f"mlflow_migrate: failed: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
