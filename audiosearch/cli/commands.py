"""One function per command: call the gateway, print text or JSON, return the exit code."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from audiosearch.cli import monitor, output
from audiosearch.cli.client import Client, format_error
from audiosearch.cli.files import discover
from audiosearch.cli.ingest import LOCAL_CODE, Failure, IngestReport, ingest_files
from audiosearch.v1 import audiosearch_pb2 as pb

EXIT_OK = 0
EXIT_PARTIAL = 1


class LocalError(Exception):
    """A problem on this side (an unreadable file), reported like a refused request."""


@contextmanager
def connected(args: argparse.Namespace) -> Iterator[Client]:
    """A client connected to --gateway, with --timeout (or the command's default) as its deadline."""
    client = Client(args.gateway, args.timeout or args.default_timeout)
    try:
        client.connect()
        yield client
    finally:
        client.close()


def read_clip(path: str) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise LocalError(f"cannot read {path}: {error.strerror or error}") from None


def _print(text: str) -> None:
    sys.stdout.write(text + "\n")


def _warn(text: str) -> None:
    sys.stderr.write(text + "\n")


def _note_untrained(model: pb.ModelIdentity, tags_shown: bool) -> None:
    """Says, beside tags printed as text, that an untrained model's tags are not classifications."""
    if model.untrained and tags_shown:
        _warn(output.untrained_note(model))


# Recordings


def cmd_ingest(args: argparse.Namespace) -> int:
    found = discover(args.paths)
    for path in found.skipped:
        _warn(f"skipped {path}: not recognised as audio")
    missing = [
        Failure(path, LOCAL_CODE, "FILE_NOT_FOUND", "no such file or directory") for path in found.missing
    ]
    if found.files:
        with connected(args) as client:
            client.get_collection(args.collection)  # one clear error rather than the same one per file
            report = ingest_files(
                client,
                args.collection,
                found.files,
                args.meta,
                parallel=args.parallel,
                timeout=args.timeout or args.default_timeout,
                progress_stream=sys.stderr,
                live=sys.stderr.isatty(),
            )
    else:
        report = IngestReport()
    report.failed[:0] = missing
    report.skipped = found.skipped
    if args.json:
        output.print_json(report.to_dict())
    else:
        _print_ingest_summary(report)
    for failure in report.failed:
        _warn(f"failed {failure.path}: {format_error(failure.code, failure.reason, failure.message)}")
    if not found.files and not report.failed:
        _warn("error: no audio files found in the given paths")
        return EXIT_PARTIAL
    return EXIT_PARTIAL if report.failed else EXIT_OK


def _print_ingest_summary(report: IngestReport) -> None:
    summary = report.summary()
    _print(
        f"ingested {summary['ingested']}, already existed {summary['already_existed']}, "
        f"failed {summary['failed']} ({summary['files']} files)"
    )
    _print(
        f"audio {summary['audio_seconds']:.1f}s in {summary['wall_seconds']:.1f}s wall "
        f"({summary['rate']:.1f} s/s)"
    )


def cmd_import_dir(args: argparse.Namespace) -> int:
    """Server-side import: the gateway reads the directory (under its GATEWAY_IMPORT_ROOTS) and streams events."""
    files: list[output.JsonDict] = []
    summary: pb.ImportProgress | None = None
    with connected(args) as client:
        client.get_collection(args.collection)
        events = client.import_directory(
            args.collection, args.path, recursive=args.recursive, metadata=args.meta,
            timeout=args.timeout or args.default_timeout,
        )
        live = sys.stderr.isatty()
        for event in events:
            kind = event.WhichOneof("event")
            if kind == "file":
                files.append(output.import_result_to_dict(event.file))
                if event.file.WhichOneof("outcome") == "error":
                    error = event.file.error
                    _warn(f"failed {event.file.name}: {format_error(error.code, error.reason, error.message)}")
            elif kind == "progress" and live:
                sys.stderr.write("\r\x1b[K" + output.import_progress_text(event.progress))
                sys.stderr.flush()
            elif kind == "summary":
                summary = event.summary
        if live:
            sys.stderr.write("\r\x1b[K")
    if summary is None:
        raise LocalError("the import stream ended without a summary")
    if args.json:
        output.print_json({"files": files, "summary": output.import_progress_to_dict(summary)})
    else:
        _print(output.import_progress_text(summary))
    return EXIT_PARTIAL if summary.errors else EXIT_OK


def cmd_search(args: argparse.Namespace) -> int:
    clip = read_clip(args.file)
    with connected(args) as client:
        response = client.search(
            args.collection,
            clip,
            top_k=args.top_k,
            min_score=args.min_score,
            tags=args.tag,
            metadata=args.meta,
        )
    if args.json:
        output.print_json(output.search_to_dict(response))
        return EXIT_OK
    context = f"query {response.query_duration_seconds:.1f}s, threshold {response.score_threshold:.3f}"
    if not response.matches:
        _print(f"no match in {args.collection} ({context})")
        return EXIT_OK
    count = len(response.matches)
    _print(f"{count} match{'es' if count != 1 else ''} in {args.collection} ({context})")
    _note_untrained(response.model, any(match.audio.tags for match in response.matches))
    rows = [
        (
            rank,
            match.audio.name,
            match.audio.id,
            f"{match.score:.3f}",
            str(match.landmarks),
            output.decided_by(match) or "-",
            output.span(match.reference_range),
            output.span(match.query_range),
            output.tag_labels(match.audio.tags),
        )
        for rank, match in enumerate(response.matches, start=1)
    ]
    _print(output.table(["rank", "name", "id", "score", "landmarks", "by", "reference", "query", "tags"], rows))
    return EXIT_OK


def cmd_tag(args: argparse.Namespace) -> int:
    clip = read_clip(args.file)
    with connected(args) as client:
        response = client.tag(clip, args.top_k)
    if args.json:
        output.print_json(output.tagging_to_dict(response))
        return EXIT_OK
    _note_untrained(response.model, bool(response.tags))
    _print(output.table(["label", "score"], [(tag.label, f"{tag.score:.3f}") for tag in response.tags]))
    if response.segments:
        _print("")
        rows = [
            (output.span(segment.range), ", ".join(f"{tag.label} ({tag.score:.2f})" for tag in segment.tags))
            for segment in response.segments
        ]
        _print(output.table(["segment", "tags"], rows))
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    with connected(args) as client:
        model = client.get_collection(args.collection).model
        records: list[pb.AudioRecord] = []
        token = args.page_token
        while True:
            page = client.list_audio(
                args.collection, page_size=args.page_size, page_token=token, tags=args.tag, metadata=args.meta
            )
            records.extend(page.audios)
            token = page.next_page_token
            if not (args.all and token):
                break
    if args.json:
        output.print_json({"audios": [output.record_to_dict(r) for r in records], "next_page_token": token,
                           "model_untrained": model.untrained})
        return EXIT_OK
    _note_untrained(model, any(r.tags for r in records))
    rows = [
        (
            r.id,
            r.name,
            output.seconds(r.duration_seconds),
            output.tag_labels(r.tags),
            output.rfc3339(r.create_time) or "-",
        )
        for r in records
    ]
    _print(output.table(["id", "name", "duration", "tags", "created"], rows))
    if token:
        _warn(f"more results: --page-token {token} (or --all)")
    return EXIT_OK


def cmd_get(args: argparse.Namespace) -> int:
    with connected(args) as client:
        record = client.get_audio(args.collection, args.id)
        if record.tags and not args.json:
            _note_untrained(client.get_collection(args.collection).model, tags_shown=True)
    _print_one(args, output.record_to_dict(record), output.record_text(record))
    return EXIT_OK


def cmd_delete(args: argparse.Namespace) -> int:
    with connected(args) as client:
        client.delete_audio(args.collection, args.id)
    _print_one(args, {"deleted": args.id, "collection": args.collection}, f"deleted {args.id}")
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    with connected(args) as client:
        response = client.stats(args.collection)
        model = client.get_collection(args.collection).model
    if args.json:
        output.print_json({**output.stats_to_dict(args.collection, response), "model_untrained": model.untrained})
        return EXIT_OK
    _note_untrained(model, bool(response.tags))
    _print(
        output.key_values(
            [
                ("collection", args.collection),
                ("recordings", response.audio_count),
                ("duration", output.seconds(response.total_duration_seconds)),
                ("segments", response.segment_count),
            ]
        )
    )
    if response.tags:
        _print("")
        rows = [(t.label, t.audio_count, output.seconds(t.total_duration_seconds)) for t in response.tags]
        _print(output.table(["tag", "recordings", "duration"], rows))
    return EXIT_OK


# Collections


def _collection_name(args: argparse.Namespace) -> str:
    return args.name or args.collection


def cmd_collections_create(args: argparse.Namespace) -> int:
    with connected(args) as client:
        collection = client.create_collection(
            _collection_name(args),
            description=args.description,
            window_seconds=args.window,
            hop_seconds=args.hop,
            score_threshold=args.threshold,
        )
    _print_one(args, output.collection_to_dict(collection), output.collection_text(collection))
    return EXIT_OK


def cmd_collections_list(args: argparse.Namespace) -> int:
    with connected(args) as client:
        collections = list(client.iter_collections(args.page_size))
    if args.json:
        output.print_json({"collections": [output.collection_to_dict(c) for c in collections]})
        return EXIT_OK
    rows = [
        (
            c.name,
            c.audio_count,
            f"{c.score_threshold:.3f}",
            f"{c.segment_config.window_seconds:g}/{c.segment_config.hop_seconds:g}s",
            c.model.name,
            output.rfc3339(c.create_time) or "-",
        )
        for c in collections
    ]
    _print(output.table(["name", "recordings", "threshold", "window/hop", "model", "created"], rows))
    return EXIT_OK


def cmd_collections_get(args: argparse.Namespace) -> int:
    with connected(args) as client:
        collection = client.get_collection(_collection_name(args))
    _print_one(args, output.collection_to_dict(collection), output.collection_text(collection))
    return EXIT_OK


def cmd_collections_delete(args: argparse.Namespace) -> int:
    name = _collection_name(args)
    with connected(args) as client:
        client.delete_collection(name)
    _print_one(args, {"deleted": name}, f"deleted collection {name}")
    return EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    with connected(args) as client:
        response = client.calibrate(args.collection, args.target_fpr)
    text = (
        f"threshold of {response.collection.name} set to {response.collection.score_threshold:.4f}, landmarks "
        f"{output.landmark_thresholds_text(response.collection)}: "
        f"true positive rate {response.true_positive_rate:.3f} over {response.positive_queries} queries, "
        f"false positive rate {response.false_positive_rate:.3f} over {response.negative_queries} queries "
        f"({response.variant_queries} found variants sharing their audio, not counted)\n"
        f"{response.collection.threshold_source}"
    )
    _print_one(args, output.calibration_to_dict(response), text)
    return EXIT_OK


def _print_one(args: argparse.Namespace, as_json: object, as_text: str) -> None:
    if args.json:
        output.print_json(as_json)
    else:
        _print(as_text)


def cmd_monitor(args: argparse.Namespace) -> int:
    header = monitor.header_from(args)
    with ExitStack() as stack:
        try:
            stream = stack.enter_context(monitor.opened_feed(args.source))
        except OSError as error:
            raise LocalError(f"cannot read {args.source}: {error.strerror or error}") from None
        client = stack.enter_context(connected(args))
        # No deadline unless --timeout: a feed may last for days.
        monitor.print_events(client.monitor(header, monitor.chunks_of(stream), timeout=args.timeout), args.json)
    return EXIT_OK
