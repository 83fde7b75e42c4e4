"""`llmops pii scan|redact|corpus`: the scanner, the redactor and the labelled corpus from the command line.

Findings never carry the matched text: stdout gets where (path, line, offsets) and what (entity type,
detector); stderr gets one line per input that could not be scanned (path, reason) and the summary
(counts per type, bytes, MB/s, inputs not scanned). Personal data in paths and object keys is shown
as placeholders (users/<EMAIL_ADDRESS>/a.jsonl) unless --raw-paths.

exit codes of scan (the first that applies):
  2  bad usage or input (a missing path, a bucket that does not exist, an empty prefix): nothing scanned
  4  some inputs could not be scanned (each named on stderr); the others were, and their findings are
     printed -- 4 wins over 5, 1 and 0: a partial scan must never look complete
  5  --pushgateway: the metrics could not be pushed (URL and reason on stderr); the scan itself was
     complete and its findings printed -- 5 wins over 1: the alerts did not hear of them
  3  --on-cluster: the estimated cost is above pii.cluster_scan.approval_over_usd and was not approved
  1  personal data found (a CI gate) -- except with --results: a shard's findings are its result (exit 0),
     so the pod of an Indexed Job succeeds
  0  nothing found

exit codes of redact (nothing is written unless it exits 0: no copy, no temporary file):
  2  bad usage or input: no such source, a source or destination that is a directory, a destination
     that exists (without --force) or cannot be written (a read-only directory)
  4  the source could not be read to its end (truncated or corrupt gzip, a read error)
  130  interrupted (Ctrl-C)
  0  the redacted copy is written
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from llmops.cli.errors import UsageError

EXIT_CLEAN, EXIT_FOUND, EXIT_INCOMPLETE, EXIT_PUSH_FAILED = 0, 1, 4, 5
EXIT_NOT_APPROVED = 3  # --on-cluster: the estimate is above the approval limit and was not approved
EXIT_MISSING_SHARDS = EXIT_INCOMPLETE  # a merge without every shard is a partial scan: it must never look complete
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report it


def _usage(message: str) -> Exception:
    return UsageError(message)


def _key(args: argparse.Namespace) -> bytes | None:
    if not args.fingerprint_key_env:
        return None
    value = os.environ.get(args.fingerprint_key_env)
    if not value:
        raise _usage(f"--fingerprint-key-env {args.fingerprint_key_env}: that environment variable is empty or unset")
    return value.encode()


def _names(args: argparse.Namespace) -> Any:
    if not args.names:
        return None
    from llmops.pii.names import NameDetector, NamesUnavailable

    try:
        return NameDetector(args.names)
    except NamesUnavailable as error:
        raise _usage(f"--names {args.names}: {error}") from None


def _s3_client(args: argparse.Namespace) -> Any:
    import boto3

    return boto3.client("s3", region_name=args.region, endpoint_url=args.endpoint_url)


def _shown(args: argparse.Namespace) -> Any:
    """How paths (and messages that name them) are printed: with placeholders for the personal data in
    them, unless --raw-paths."""
    if getattr(args, "raw_paths", False):
        return lambda text: text
    from functools import lru_cache

    from llmops.pii.redact import redact_text

    return lru_cache(maxsize=4096)(redact_text)


def _say(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)  # above the progress bar, when there is one


def _write_finding(out: Any, finding: dict[str, Any], output: str) -> None:
    if output == "jsonl":
        out.write(json.dumps(finding) + "\n")
    elif output == "text":
        fingerprint = finding.get("fingerprint")
        out.write(f"{finding['path']}:{finding['line']}:{finding['start']}-{finding['end']}: {finding['entity_type']} "
                  f"({finding['detector']}){' ' + fingerprint if fingerprint else ''}\n")


def _shard(args: argparse.Namespace) -> tuple[int, int] | None:
    if args.shard is None and args.shards is None:
        if args.results:
            raise _usage("--results needs a shard: --shard I/N, or --shards N in an Indexed Job's pod")
        return None
    from llmops.pii.shards import ShardError, parse_shard

    try:
        return parse_shard(args.shard, args.shards)
    except ShardError as error:
        raise _usage(str(error)) from None


def _results(args: argparse.Namespace) -> tuple[str, str] | None:
    if not args.results:
        return None
    from llmops.pii.sources import SourceError, parse_s3_uri

    try:
        return parse_s3_uri(args.results)
    except SourceError as error:
        raise _usage(f"--results: {error}") from None


def _cluster_settings(targets: Any) -> Any:
    from runbooks.adapters.pii_cluster import cluster_settings
    from runbooks.engine import InputError

    try:
        return cluster_settings(targets)
    except InputError as error:
        raise _usage(f"--on-cluster: {error}") from None


def _approved(estimate: Any, limit: float, yes: bool) -> bool:
    if estimate.cost_usd <= limit or yes:
        return True
    if not sys.stdin.isatty():
        print(f"pii: the estimate (${estimate.cost_usd:.2f}) is above the approval limit (${limit:.2f}, "
              "pii.cluster_scan.approval_over_usd): pass --yes to start it anyway", file=sys.stderr)
        return False
    answer = input(f"The estimate is above ${limit:.2f}. Start the scan? [y/N] ")
    return answer.strip().lower() in ("y", "yes")


def _on_cluster(args: argparse.Namespace) -> int:
    from llmops.pii import cluster
    from llmops.pii.shards import MissingShards, merge
    from llmops.pii.sources import SourceError, parse_s3_uri
    from runbooks.engine import InputError, PreconditionFailed
    from runbooks.targets import load_targets

    if args.shards is None or args.shard is not None or args.results:
        raise _usage("--on-cluster takes --shards N (the Job's pods), not --shard or --results")
    if len(args.paths) != 1 or not args.paths[0].startswith("s3://"):
        raise _usage("--on-cluster scans one s3://bucket/prefix/")
    if not args.env:
        raise _usage("--on-cluster needs --env ENV (the cluster, results prefix and prices of stacks/targets/ENV.yaml)")
    source = args.paths[0]
    try:
        targets = load_targets(args.env)
        bucket, prefix = parse_s3_uri(source)
    except (InputError, SourceError) as error:
        raise _usage(str(error)) from None
    settings = _cluster_settings(targets)
    assert targets.pii is not None and targets.pii.cluster_scan is not None  # _cluster_settings checked
    scan_config = targets.pii.cluster_scan
    if args.shards < 1 or args.shards > settings.max_pods:
        raise _usage(f"--shards {args.shards}: expected 1 to {settings.max_pods} (pii.cluster_scan.max_pods)")
    if not cluster.readable(settings, source):
        raise _usage(f"{source}: the scanner's role may only read {', '.join(settings.readable)} "
                     "(pii.cluster_scan.readable, provisioned by the stack)")
    scan_id = args.scan_id or cluster.new_scan_id()
    if not cluster.SCAN_ID.match(scan_id):
        raise _usage(f"--scan-id {scan_id!r}: expected lowercase letters, digits and '-' (at most 42)")
    args.endpoint_url = args.endpoint_url or targets.aws.endpoint_url
    args.region = args.region or targets.aws.region
    s3 = _s3_client(args)
    objects, size = cluster.scope(s3, bucket, prefix, args.versions)
    if not objects:
        raise _usage(f"{source}: no objects under this prefix")
    plan = cluster.estimate(size, objects, args.shards, settings)
    print(f"pii: cluster scan {scan_id}: {plan.describe()} (at {settings.mb_per_second_per_pod:g} MB/s per pod, "
          f"${settings.pod_price_per_hour:g} per pod-hour)", file=sys.stderr)
    if not _approved(plan, settings.approval_over_usd, args.yes):
        return EXIT_NOT_APPROVED
    job = cluster.job_for(settings, scan_id=scan_id, source=source, shards=args.shards, versions=args.versions)
    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    results = cluster.results_uri(settings, scan_id)
    try:
        batch = _kubernetes(targets).batch
        cluster.submit(batch, job)
        print(f"pii: submitted job {namespace}/{name}; results under {results}", file=sys.stderr)
        with _JobProgress(args.shards, cluster.ScannedBytes(s3, results, args.shards, size)) as progress:
            state = cluster.wait(batch, name, namespace, args.shards,
                                 poll_seconds=args.poll_seconds or scan_config.poll_seconds,
                                 timeout_seconds=scan_config.timeout_seconds, on_change=progress.update)
    except PreconditionFailed as error:
        print(f"pii: {error}", file=sys.stderr)
        return EXIT_INCOMPLETE
    if state.failed:
        failed = ", ".join(map(str, sorted(state.failed)))
        print(f"pii: shard(s) {failed} of job {namespace}/{name} failed every retry"
              + (f" ({state.failed_reason})" if state.failed_reason else "")
              + f"; rerun one with: llmops pii scan {source} --shard I/{args.shards} --results {results}",
              file=sys.stderr)
    try:
        merged = merge(s3, *parse_s3_uri(results), args.shards)
    except MissingShards as missing:
        print(f"pii: cannot merge {results}: {missing}; the scan is incomplete (exit {EXIT_INCOMPLETE})",
              file=sys.stderr)
        return EXIT_INCOMPLETE
    return _print_merged(merged, args.output, f"merged {args.shards} shard(s) of job {name}:")


class _JobProgress:
    """Shards done and failed and bytes scanned (of the scope's), as a rich progress bar on a terminal; a line per
    change into a pipe or log; a summary line when the Job has finished."""

    def __init__(self, shards: int, scanned: Any) -> None:
        self.shards = shards
        self.scanned = scanned  # cluster.ScannedBytes: reads each completed shard's manifest once
        self.bar: Any = None
        self.state: Any = None

    def __enter__(self) -> _JobProgress:
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn("scanning on the cluster"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[failed]} failed"), TextColumn("{task.fields[bytes]}"),
                                TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self.task = self.bar.add_task("shards", total=self.shards, failed=0, bytes=self._bytes())
            self.bar.start()
        return self

    def _bytes(self) -> str:
        from rich.filesize import decimal

        unknown = f" ({len(self.scanned.unknown)} unknown)" if self.scanned.unknown else ""
        return f"{decimal(self.scanned.scanned)} / {decimal(self.scanned.total)}{unknown}"

    def _line(self, state: Any) -> str:
        return f"{len(state.done)} of {self.shards} shard(s) done, {len(state.failed)} failed; {self.scanned.describe()}"

    def update(self, state: Any) -> None:
        self.state = state
        for index, reason in self.scanned.update(state):  # rich shows prints above its bar
            print(f"pii: bytes unknown for shard {index} ({reason}); the merge decides", file=sys.stderr)
        if self.bar is not None:
            self.bar.update(self.task, completed=len(state.done), failed=len(state.failed), bytes=self._bytes())
        else:
            print(f"pii: {self._line(state)}", file=sys.stderr)

    def __exit__(self, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()
        if exc[0] is None and self.state is not None:
            print(f"pii: job finished: {self._line(self.state)}", file=sys.stderr)


def _kubernetes(targets: Any) -> Any:
    from runbooks.adapters.kubernetes_cluster import KubernetesCluster

    if targets.kubernetes is None:
        raise _usage(f"--on-cluster: stacks/targets/{targets.environment}.yaml has no kubernetes section")
    k = targets.kubernetes
    return KubernetesCluster(host=k.host, context=k.context, kubeconfig=k.kubeconfig, in_cluster=k.in_cluster)


def _scan(args: argparse.Namespace) -> int:
    from llmops.pii.scanner import Summary
    from llmops.pii.sources import SourceError, resolve, scan_sources

    if args.on_cluster:
        return _on_cluster(args)
    key, names, show = _key(args), _names(args), _shown(args)
    shard, results = _shard(args), _results(args)
    if args.pushgateway:
        from llmops.pii.metrics import gateway_url

        try:
            gateway_url(args.pushgateway)
        except ValueError as error:
            raise _usage(f"--pushgateway {args.pushgateway}: {error}") from None
    try:
        sources = resolve(args.paths, lambda: _s3_client(args), versions=args.versions)
    except SourceError as error:
        raise _usage(show(str(error))) from None
    writer = None
    if shard is not None:
        from llmops.pii.shards import ResultWriter, select

        sources = select(sources, *shard)
        writer = ResultWriter(*shard) if results else None
    total = Summary()
    out = sys.stdout
    for scanned in scan_sources(sources, workers=args.workers, key=key, progress=True, names=names,
                                keep_going=True, show=show):
        total.add(scanned.summary)
        path = show(scanned.source.name)
        for finding in scanned.findings:
            _write_finding(out, finding._replace(path=path).to_dict(), args.output)
        if scanned.error:
            _say(show(f"pii: could not scan {scanned.source.name}: {scanned.error}"))
        if writer is not None:
            source = scanned.source
            writer.add(scanned.findings, source.key or source.name, source.size, scanned.summary, scanned.error, path)
    out.flush()
    if writer is not None and results is not None and shard is not None:
        from llmops.pii.shards import results_key

        bucket, prefix = results
        target = results_key(prefix, shard[0])
        writer.commit(_s3_client(args), bucket, target)
        print(f"pii: shard {shard[0]}/{shard[1]}: {len(sources)} input(s); result written to s3://{bucket}/{target}",
              file=sys.stderr)
    _report(total.to_dict(), "scanned")
    if total.unreadable:
        print(f"pii: {total.unreadable} of {total.files} input(s) could not be scanned: the scan is incomplete "
              f"(exit {EXIT_INCOMPLETE})", file=sys.stderr)
    pushed = _push(args, total, show) if args.pushgateway else True
    if total.unreadable:
        return EXIT_INCOMPLETE  # before all else: a partial scan must never look complete
    if not pushed:
        return EXIT_PUSH_FAILED  # before EXIT_FOUND: the alerts did not hear of what was found
    if writer is not None:
        return EXIT_CLEAN  # the findings are the shard's result, not its failure: an Indexed Job's pod succeeds
    return EXIT_FOUND if sum(total.counts.values()) else EXIT_CLEAN


def _merge(args: argparse.Namespace) -> int:
    from llmops.pii.shards import MissingShards, merge
    from llmops.pii.sources import SourceError, parse_s3_uri

    if args.shards < 1:
        raise _usage(f"--shards {args.shards}: expected at least 1")
    try:
        bucket, prefix = parse_s3_uri(args.results)
    except SourceError as error:
        raise _usage(str(error)) from None
    try:
        merged = merge(_s3_client(args), bucket, prefix, args.shards)
    except MissingShards as missing:
        print(f"pii: cannot merge {args.results}: {missing} (run those shards again, then merge)", file=sys.stderr)
        return EXIT_MISSING_SHARDS
    return _print_merged(merged, args.output, f"merged {args.shards} shard(s):")


def _print_merged(merged: Any, output: str, verb: str) -> int:
    for finding in merged.findings:
        _write_finding(sys.stdout, finding, output)
    sys.stdout.flush()
    for failed in merged.errors:
        print(f"pii: could not scan {failed['path']}: {failed['reason']}", file=sys.stderr)
    s = merged.summary
    _report({"files": s["versions"], "unreadable_files": len(merged.errors), "bytes": s["scanned_bytes"],
             "counts": s["counts"]}, verb)
    if merged.errors:
        print(f"pii: {len(merged.errors)} input(s) could not be scanned: the scan is incomplete "
              f"(exit {EXIT_INCOMPLETE})", file=sys.stderr)
        return EXIT_INCOMPLETE
    return EXIT_FOUND if s["findings"] else EXIT_CLEAN


def _push(args: argparse.Namespace, total: Any, show: Any) -> bool:
    from llmops.pii.metrics import PushFailed, push_scan

    try:
        push_scan(args.pushgateway, args.source_label or show(args.paths[0]), total.counts, total.bytes,
                  complete=not total.unreadable)
    except PushFailed as error:
        print(f"pii: could not push metrics to {error}", file=sys.stderr)
        return False
    return True


def _report(summary: dict[str, Any], verb: str) -> None:
    counts = ", ".join(f"{k} {v}" for k, v in summary["counts"].items()) or "nothing found"
    rate = f", {summary['mb_per_second']} MB/s" if "mb_per_second" in summary else ""
    files = f"{summary['files']} file(s), " if "files" in summary else ""
    if summary.get("unreadable_files"):
        files = f"{summary['files']} file(s) ({summary['unreadable_files']} could not be scanned), "
    print(f"pii: {verb} {files}{summary['bytes'] / 1e6:.1f} MB{rate}: {counts}", file=sys.stderr)


def _redact(args: argparse.Namespace) -> int:
    from llmops.pii.redact import SourceUnreadable, redact_file

    show = _shown(args)
    try:
        result = redact_file(args.source, args.target, overwrite=args.force, names=_names(args))
    except FileNotFoundError as error:
        raise _usage(show(f"{error.filename}: no such file")) from None
    except IsADirectoryError as error:
        raise _usage(show(f"{error.filename}: is a directory; expected a file to redact")) from None
    except (FileExistsError, ValueError) as error:  # ValueError: DestinationError too
        raise _usage(show(str(error))) from None
    except SourceUnreadable as error:
        print(show(f"pii: could not read {error}; nothing was written"), file=sys.stderr)
        return EXIT_INCOMPLETE
    except KeyboardInterrupt:
        print(show(f"pii: interrupted; {args.target} was not written"), file=sys.stderr)
        return EXIT_INTERRUPTED
    _report(result.to_dict(), show(f"redacted {args.source} -> {args.target},"))
    return EXIT_CLEAN


def _corpus(args: argparse.Namespace) -> int:
    from llmops.pii.corpus import write

    if args.lines < 1:
        raise _usage(f"--lines {args.lines}: expected a positive number of lines")
    if not 0 <= args.density <= 1:
        raise _usage(f"--density {args.density}: expected a fraction between 0 and 1")
    written = write(args.out, args.lines, seed=args.seed, jsonl=args.format == "jsonl", density=args.density,
                    prose=args.prose, labels_path=args.labels)
    print(f"pii: wrote {args.lines} lines ({written / 1e6:.1f} MB) to {args.out}"
          + (f", labels in {args.labels}" if args.labels else ""), file=sys.stderr)
    return EXIT_CLEAN


def add_parsers(commands: Any) -> None:
    pii = commands.add_parser("pii", help="find and redact personal data and leaked secrets in logs").add_subparsers(
        dest="pii_command", required=True)
    scan = pii.add_parser(
        "scan", help="scan files, directories or s3://bucket/prefix (plain, JSON lines, gzip)",
        description=__doc__.split("\n\n")[1], epilog=__doc__.split("\n\n")[2],
        formatter_class=argparse.RawDescriptionHelpFormatter)
    scan.add_argument("paths", nargs="+", metavar="PATH", help="a file, a directory (recursively) or s3://bucket/prefix")
    scan.add_argument("--output", choices=("text", "jsonl", "none"), default="text",
                      help="findings on stdout: text, jsonl ({path, line, start, end, entity_type, detector}), or none")
    scan.add_argument("--workers", type=int, default=8, help="S3 objects scanned in parallel (default 8)")
    scan.add_argument("--fingerprint-key-env", metavar="VAR",
                      help="add a keyed hash of each value (HMAC-SHA256 with the key in this environment variable)")
    scan.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"),
                      help="AWS region for s3:// sources")
    scan.add_argument("--endpoint-url", help="S3 endpoint (a local test server)")
    names_help = ("also find names (PERSON) with Presidio and this spaCy model (a package name or directory); "
                  "needs the presidio extra, and is about a thousand times slower")
    scan.add_argument("--names", metavar="SPACY_MODEL", help=names_help)
    scan.add_argument("--pushgateway", metavar="URL",
                      help="push findings per type, last success and bytes to this Pushgateway (the PII alerts read "
                           "them); a scan with inputs it could not read pushes its findings but no last success")
    scan.add_argument("--source-label", metavar="NAME", help="the metrics' source label (default: the first PATH)")
    scan.add_argument("--raw-paths", action="store_true",
                      help="print paths and object keys as they are; by default personal data in them is shown "
                           "as placeholders (users/<EMAIL_ADDRESS>/a.jsonl)")
    scan.add_argument("--versions", action="store_true",
                      help="s3://: scan every version of each object (not delete markers), not only the current one")
    scan.add_argument("--shard", metavar="I/N",
                      help="scan only shard I of N: the objects whose SHA-256 of the key (and version id) mod N is I; "
                           "I may be left out (/N) to take it from JOB_COMPLETION_INDEX, as in an Indexed Job")
    scan.add_argument("--shards", type=int, metavar="N",
                      help="the number of shards, the index coming from JOB_COMPLETION_INDEX (Kubernetes sets it)")
    scan.add_argument("--results", metavar="s3://BUCKET/PREFIX/",
                      help="with a shard: write its findings (as --output jsonl) and a manifest line to "
                           "PREFIX/shard-I.jsonl, in one upload at the end (whole or absent; a rerun replaces it); "
                           "findings then exit 0, not 1 -- they are the result; merge with `llmops pii merge`")
    scan.add_argument("--on-cluster", action="store_true",
                      help="run the scan as a Kubernetes Indexed Job of --shards N pods (the cluster, results prefix, "
                           "image and prices from --env's targets file), print its estimated time and cost first, "
                           "wait for it, then print the merged report")
    scan.add_argument("--env", metavar="ENV", help="with --on-cluster: stacks/targets/ENV.yaml")
    scan.add_argument("--scan-id", help="with --on-cluster: names the Job and the results prefix (default: the time)")
    scan.add_argument("--yes", action="store_true", help="with --on-cluster: start even above the approval limit")
    scan.add_argument("--poll-seconds", type=float, help=argparse.SUPPRESS)
    scan.set_defaults(handler=_scan)
    merge = pii.add_parser(
        "merge", help="merge the shards of a sharded scan (s3://.../results/<scan-id>/) into one report",
        description="Print the findings of shards 0..N-1 as one scan would (text, jsonl or none) and their summary.",
        epilog="exit codes: 2 bad usage; 4 a shard has no result (each named on stderr; nothing printed) or some "
               "inputs could not be scanned; 1 personal data found; 0 nothing found",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    merge.add_argument("results", metavar="s3://BUCKET/PREFIX/")
    merge.add_argument("--shards", type=int, required=True, metavar="N")
    merge.add_argument("--output", choices=("text", "jsonl", "none"), default="text")
    merge.add_argument("--region", default=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))
    merge.add_argument("--endpoint-url", help="S3 endpoint (a local test server)")
    merge.set_defaults(handler=_merge)
    redact = pii.add_parser("redact", help="write a redacted copy with typed placeholders (JSON lines stay valid)",
                            epilog=__doc__.split("\n\n")[3], formatter_class=argparse.RawDescriptionHelpFormatter)
    redact.add_argument("source", metavar="IN")
    redact.add_argument("target", metavar="OUT", help="gzip-compressed when it ends in .gz")
    redact.add_argument("--force", action="store_true", help="replace OUT if it exists (never IN)")
    redact.add_argument("--names", metavar="SPACY_MODEL", help=names_help)
    redact.set_defaults(handler=_redact)
    corpus = pii.add_parser("corpus", help="write a labelled corpus of inference-log lines (tests, benchmarks)")
    corpus.add_argument("out", metavar="OUT")
    corpus.add_argument("--lines", type=int, default=10000)
    corpus.add_argument("--density", type=float, default=0.5, help="share of lines carrying PII (default 0.5)")
    corpus.add_argument("--prose", type=int, default=0, help="up to this many free-text sentences per line")
    corpus.add_argument("--seed", type=int, default=7)
    corpus.add_argument("--format", choices=("jsonl", "plain"), default="jsonl")
    corpus.add_argument("--labels", metavar="FILE", help="also write the labels (line, start, end, entity_type)")
    corpus.set_defaults(handler=_corpus)
