"""`audiosearch`: argument parsing, dispatch to the commands, and the mapping from failures to exit codes.

Exit codes: 0 success, 1 some files failed to ingest, 2 the gateway refused the request (or bad usage),
3 the gateway could not be reached, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from audiosearch.cli import __version__, commands, monitor
from audiosearch.cli.client import GatewayError, GatewayUnreachableError

GATEWAY_ENV = "AUDIOSEARCH_GATEWAY"
DEFAULT_GATEWAY = "127.0.0.1:50051"
DEFAULT_COLLECTION = "default"
EXIT_REFUSED = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130
UNREACHABLE_HINT = f"is the gateway running? set --gateway or {GATEWAY_ENV}"

# Per-call deadlines when --timeout is not given: ingest is per file, calibration scores many queries.
QUICK_TIMEOUT = 30.0
AUDIO_TIMEOUT = 120.0
LONG_TIMEOUT = 600.0
IMPORT_TIMEOUT = 24 * 3600.0  # a whole directory in one call
# What `calibrate` aims for unless told: at most one false match in a hundred searches for sounds not held.
DEFAULT_TARGET_FPR = 0.01

Handler = Callable[[argparse.Namespace], int]


def key_value(text: str) -> tuple[str, str]:
    """Parses `key=value` (the value may contain '=' and be empty; the key may not)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _common_options() -> argparse.ArgumentParser:
    """Options every command accepts, before or after the command name (defaults filled in later)."""
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("common options")
    group.add_argument(
        "--collection",
        default=argparse.SUPPRESS,
        metavar="NAME",
        help=f"collection to work on (default: {DEFAULT_COLLECTION})",
    )
    group.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON on stdout")
    group.add_argument(
        "--gateway",
        default=argparse.SUPPRESS,
        metavar="ADDR",
        help=f"gateway address host:port (default: ${GATEWAY_ENV}, else {DEFAULT_GATEWAY})",
    )
    group.add_argument(
        "--timeout",
        type=positive_float,
        default=argparse.SUPPRESS,
        metavar="SECONDS",
        help="deadline of each call (default: 30 s, 120 s for search/tag, 600 s per file for ingest "
        "and for calibrate)",
    )
    return common


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tag",
        action="append",
        default=[],
        metavar="LABEL",
        help="only recordings carrying this tag among their top tags (repeatable)",
    )
    _add_meta(parser, "only recordings whose metadata has key=value (repeatable)")


def _add_meta(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "--meta", action="append", type=key_value, default=[], metavar="KEY=VALUE", help=help_text
    )


class _Commands:
    """Adds subcommands that all carry the common options, a handler and a default deadline."""

    def __init__(self, subparsers: argparse._SubParsersAction, common: argparse.ArgumentParser) -> None:
        self.subparsers = subparsers
        self.common = common

    def add(self, name: str, handler: Handler, timeout: float, help_text: str) -> argparse.ArgumentParser:
        parser = self.subparsers.add_parser(
            name, parents=[self.common], help=help_text, description=help_text
        )
        parser.set_defaults(handler=handler, default_timeout=timeout)
        return parser

    def group(self, name: str, help_text: str) -> _Commands:
        parser = self.subparsers.add_parser(
            name, parents=[self.common], help=help_text, description=help_text
        )
        return _Commands(
            parser.add_subparsers(dest=f"{name}_action", metavar="ACTION", required=True), self.common
        )


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="audiosearch",
        parents=[common],
        description="Reverse audio search: ingest recordings into collections, then find them from clips.",
        epilog="exit codes: 0 ok, 1 some files failed to ingest, 2 request refused, 3 gateway unreachable",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    top = _Commands(parser.add_subparsers(dest="command", metavar="COMMAND", required=True), common)
    _add_recording_commands(top)
    _add_collection_commands(top.group("collections", "create, list, show and delete collections"))
    return parser


def _add_recording_commands(top: _Commands) -> None:
    ingest = top.add(
        "ingest", commands.cmd_ingest, LONG_TIMEOUT, "ingest audio files and directories (recursively)"
    )
    ingest.add_argument("paths", nargs="+", metavar="PATH", help="audio files or directories")
    _add_meta(ingest, "metadata stored with every file (repeatable); `path` is set to each file's path")
    ingest.add_argument(
        "--parallel",
        type=positive_int,
        default=4,
        metavar="N",
        help="files streamed concurrently (default: 4)",
    )

    import_dir = top.add(
        "import-dir",
        commands.cmd_import_dir,
        IMPORT_TIMEOUT,
        "import a directory on the gateway's side (under its GATEWAY_IMPORT_ROOTS), with live progress",
    )
    import_dir.add_argument("path", metavar="PATH", help="directory, relative to one of the gateway's import roots")
    import_dir.add_argument(
        "--no-recursive", dest="recursive", action="store_false", help="leave subdirectories out"
    )
    _add_meta(import_dir, "metadata stored with every file (repeatable); `path` is set to each file's path")

    search = top.add("search", commands.cmd_search, AUDIO_TIMEOUT, "find the recordings most like a clip")
    search.add_argument("file", metavar="FILE", help="the query clip")
    search.add_argument(
        "--top-k",
        type=positive_int,
        default=0,
        metavar="N",
        help="number of matches (default: the gateway's, 10)",
    )
    search.add_argument(
        "--min-score",
        type=float,
        default=None,
        metavar="X",
        help="score threshold overriding the collection's",
    )
    _add_filters(search)

    monitor_command = top.add(
        "monitor", commands.cmd_monitor, IMPORT_TIMEOUT,
        "watch a feed (a file, or - for stdin) for every play of the collection's recordings, printed live",
    )
    monitor.add_arguments(monitor_command)
    _add_filters(monitor_command)

    tag = top.add("tag", commands.cmd_tag, AUDIO_TIMEOUT, "classify a clip with AudioSet tags")
    tag.add_argument("file", metavar="FILE", help="the clip")
    tag.add_argument(
        "--top-k",
        type=positive_int,
        default=0,
        metavar="N",
        help="number of tags (default: the gateway's, 5)",
    )

    listing = top.add("list", commands.cmd_list, QUICK_TIMEOUT, "list the recordings of a collection")
    listing.add_argument(
        "--page-size",
        type=positive_int,
        default=0,
        metavar="N",
        help="recordings per page (default: the gateway's, 50)",
    )
    listing.add_argument("--page-token", default="", metavar="TOKEN", help="continue from a previous page")
    listing.add_argument("--all", action="store_true", help="follow page tokens to the end")
    _add_filters(listing)

    top.add("get", commands.cmd_get, QUICK_TIMEOUT, "show one recording").add_argument(
        "id", metavar="ID", help="recording id"
    )
    top.add("delete", commands.cmd_delete, QUICK_TIMEOUT, "delete one recording").add_argument(
        "id", metavar="ID", help="recording id"
    )
    top.add("stats", commands.cmd_stats, QUICK_TIMEOUT, "count the recordings of a collection, per tag")
    top.add(
        "calibrate",
        commands.cmd_calibrate,
        LONG_TIMEOUT,
        "set a collection's score threshold from its own content",
    ).add_argument(
        "--target-fpr",
        type=float,
        default=DEFAULT_TARGET_FPR,
        metavar="RATE",
        help=f"target false-positive rate (default: {DEFAULT_TARGET_FPR:g})",
    )


def _add_collection_commands(group: _Commands) -> None:
    name_help = "collection name (overrides --collection)"
    create = group.add("create", commands.cmd_collections_create, QUICK_TIMEOUT, "create a collection")
    create.add_argument("name", metavar="NAME", help=name_help)
    create.add_argument(
        "--window",
        type=positive_float,
        default=0.0,
        metavar="S",
        help="window length in seconds (default: the gateway's, 2)",
    )
    create.add_argument(
        "--hop",
        type=positive_float,
        default=0.0,
        metavar="S",
        help="hop between windows in seconds (default: the gateway's, 1)",
    )
    create.add_argument(
        "--threshold", type=float, default=0.0, metavar="X", help="score threshold (default: the gateway's)"
    )
    create.add_argument("--description", default="", help="free text")

    group.add("list", commands.cmd_collections_list, QUICK_TIMEOUT, "list collections").add_argument(
        "--page-size", type=positive_int, default=0, metavar="N", help="collections per call"
    )
    group.add("get", commands.cmd_collections_get, QUICK_TIMEOUT, "show one collection").add_argument(
        "name", metavar="NAME", help=name_help
    )
    group.add(
        "delete",
        commands.cmd_collections_delete,
        QUICK_TIMEOUT,
        "delete a collection with all its recordings",
    ).add_argument("name", metavar="NAME", help=name_help)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parses the command line and fills in the common options' defaults (read from the environment now)."""
    args = build_parser().parse_args(argv)
    defaults = {
        "collection": DEFAULT_COLLECTION,
        "json": False,
        "gateway": os.environ.get(GATEWAY_ENV) or DEFAULT_GATEWAY,
        "timeout": None,
        "meta": [],
    }
    for key, value in defaults.items():
        if not hasattr(args, key):
            setattr(args, key, value)
    args.meta = dict(args.meta)
    return args


def run(args: argparse.Namespace) -> int:
    """Runs the parsed command; failures become one `error:` line on stderr and an exit code."""
    try:
        return args.handler(args)
    except GatewayUnreachableError as error:
        _error(f"{error} ({UNREACHABLE_HINT})")
        return EXIT_UNREACHABLE
    except GatewayError as error:
        hint = " (raise --timeout?)" if error.code == "DEADLINE_EXCEEDED" else ""
        _error(f"{error}{hint}")
        return EXIT_REFUSED
    except commands.LocalError as error:
        _error(str(error))
        return EXIT_REFUSED


def _error(text: str) -> None:
    sys.stderr.write(f"error: {text}\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        code = run(args)
        sys.stdout.flush()
    except KeyboardInterrupt:
        _error("interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of stdout went away (e.g. `| head`): exit quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return commands.EXIT_PARTIAL
    return code


if __name__ == "__main__":
    sys.exit(main())
