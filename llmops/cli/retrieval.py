"""`llmops retrieval freshness`: compare the live index with its corpus and publish the freshness metrics
(what the RetrievalIndex component's CronJob runs). Prints them as JSON; pushes them with --pushgateway.
Exit 0 when computed (the alerts judge the values), 1 when a backend cannot be read, 2 on bad input."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from llmops.cli.errors import UsageError


def _usage(message: str) -> Exception:
    return UsageError(message)


def _freshness(args: argparse.Namespace) -> int:
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    from llmops.pii.sources import SourceError, parse_s3_uri
    from llmops.retrieval.build import s3_snapshot
    from llmops.retrieval.freshness import freshness, push
    from llmops.retrieval.store import IndexStore

    if bool(args.qdrant_url) == bool(args.qdrant_path):
        raise _usage("give exactly one of --qdrant-url and --qdrant-path")
    try:
        bucket, prefix = parse_s3_uri(args.corpus)
    except SourceError as error:
        raise _usage(f"--corpus: {error}") from None
    api_key = os.environ.get(args.qdrant_api_key_env) if args.qdrant_api_key_env else None
    if args.qdrant_api_key_file:
        try:
            api_key = open(args.qdrant_api_key_file).read().strip()
        except OSError as error:
            raise _usage(f"--qdrant-api-key-file {args.qdrant_api_key_file}: {error.strerror}") from None
    try:
        store = IndexStore(url=args.qdrant_url, path=args.qdrant_path, api_key=api_key)
        try:
            live = store.live(args.index)
            corpus = s3_snapshot(boto3.client("s3", region_name=args.region, endpoint_url=args.endpoint_url), bucket, prefix)
            metrics: dict[str, Any] = {"index": args.index, "collection": live,
                                       **freshness(store, live, corpus, args.serving_fingerprint)}
        finally:
            store.close()
        if args.pushgateway:
            push(args.pushgateway, args.index, metrics)
    except (BotoCoreError, ClientError, OSError, RuntimeError) as error:
        print(f"llmops: retrieval freshness: {error}", file=sys.stderr)
        return 1
    print(json.dumps(metrics, sort_keys=True))
    return 0


def add_parsers(commands: Any) -> None:
    retrieval = commands.add_parser("retrieval", help="retrieval indexes: freshness").add_subparsers(
        dest="retrieval_command", required=True)
    fresh = retrieval.add_parser("freshness", help="compare the live index with its corpus; publish the metrics",
                                 description=__doc__.split("\n")[0])
    fresh.add_argument("--index", required=True, help="the index (its alias in Qdrant), e.g. docs")
    fresh.add_argument("--corpus", required=True, help="s3://bucket/prefix of the documents")
    fresh.add_argument("--serving-fingerprint", required=True, help="the retrieval config fingerprint serving uses")
    fresh.add_argument("--qdrant-url", help="Qdrant server, e.g. http://qdrant.retrieval:6333")
    fresh.add_argument("--qdrant-path", help="an embedded Qdrant directory (drills and tests)")
    fresh.add_argument("--qdrant-api-key-env", metavar="VAR", help="environment variable holding Qdrant's API key")
    fresh.add_argument("--qdrant-api-key-file", metavar="FILE", help="a file holding Qdrant's API key (the CronJob's)")
    fresh.add_argument("--pushgateway", metavar="URL", help="push the metrics here (the index alerts read them)")
    fresh.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    fresh.add_argument("--endpoint-url", help="S3 endpoint (a local test server)")
    fresh.set_defaults(handler=_freshness)
