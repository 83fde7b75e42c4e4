"""Small programs that run inside our containers (mounted from ConfigMaps), tested here against real backends.

`secret_exec` turns a Secrets Manager secret into environment variables and execs the real
command, so no password is ever in a manifest, a Kubernetes Secret or a file.
`mlflow_migrate` brings the registry's database schema to this MLflow version exactly once.
"""

from pathlib import Path

DIRECTORY = Path(__file__).parent


def source(name: str) -> str:
    """The text of one entrypoint, as mounted into a container."""
    return (DIRECTORY / name).read_text()
