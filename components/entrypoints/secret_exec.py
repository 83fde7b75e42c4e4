"""Run a command with values from an AWS Secrets Manager secret in its environment.

    python secret_exec.py --secret-arn ARN --env PGPASSWORD=password [--env NAME=KEY ...] -- COMMAND [ARG ...]

The secret must be a JSON object; each --env NAME=KEY sets NAME to the value of KEY.
Credentials come from the pod's IAM role (IRSA). Nothing is written to disk or logged;
the process is replaced by COMMAND (exec), so signals reach it directly.
Exit codes: 2 bad usage or a secret without the key; 1 the secret could not be read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    if "--" not in argv:
        raise SystemExit("secret_exec: expected -- before the command to run")
    split = argv.index("--")
    parser = argparse.ArgumentParser(prog="secret_exec")
    parser.add_argument("--secret-arn", required=True)
    parser.add_argument("--region", default=os.environ.get("AWS_REGION"))
    parser.add_argument("--env", action="append", default=[], metavar="NAME=KEY", required=True)
    args = parser.parse_args(argv[:split])
    command = argv[split + 1:]
    if not command:
        parser.error("no command after --")
    for item in args.env:
        if "=" not in item:
            parser.error(f"--env {item!r}: expected NAME=KEY")
    return args, command


def secret_values(secret_arn: str, region: str | None, endpoint_url: str | None = None) -> dict[str, str]:
    import boto3

    client = boto3.client("secretsmanager", region_name=region, endpoint_url=endpoint_url)
    payload = client.get_secret_value(SecretId=secret_arn)["SecretString"]
    values = json.loads(payload)
    if not isinstance(values, dict):
        raise ValueError("the secret is not a JSON object")
    return values


def environment(values: dict[str, str], mappings: list[str]) -> dict[str, str]:
    env = {}
    for mapping in mappings:
        name, key = mapping.split("=", 1)
        if key not in values:
            raise KeyError(key)
        env[name] = str(values[key])
    return env


def main(argv: list[str]) -> int:
    args, command = parse_args(argv)
    try:
        values = secret_values(args.secret_arn, args.region, os.environ.get("AWS_ENDPOINT_URL_SECRETS_MANAGER"))
    except Exception as error:  # noqa: BLE001 - report the kind of failure, never the payload
        print(f"secret_exec: cannot read secret {args.secret_arn}: {type(error).__name__}", file=sys.stderr)
        return 1
    try:
        extra = environment(values, args.env)
    except KeyError as missing:
        print(f"secret_exec: secret {args.secret_arn} has no key {missing}", file=sys.stderr)
        return 2
    os.execvpe(command[0], command, {**os.environ, **extra})
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
