"""Command-line parsing: common options anywhere, defaults, repeated key=value pairs, --help everywhere."""

from __future__ import annotations

import pytest

from audiosearch.cli import commands
from audiosearch.cli.main import DEFAULT_GATEWAY, GATEWAY_ENV, parse_args

COMMANDS = [
    ["ingest"],
    ["search"],
    ["tag"],
    ["list"],
    ["get"],
    ["delete"],
    ["stats"],
    ["calibrate"],
    ["collections"],
    ["collections", "create"],
    ["collections", "list"],
    ["collections", "get"],
    ["collections", "delete"],
]


@pytest.fixture(autouse=True)
def _no_gateway_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(GATEWAY_ENV, raising=False)


def test_defaults() -> None:
    args = parse_args(["stats"])
    assert args.collection == "default"
    assert args.json is False
    assert args.gateway == DEFAULT_GATEWAY
    assert args.timeout is None
    assert args.handler is commands.cmd_stats
    assert args.default_timeout > 0


def test_gateway_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(GATEWAY_ENV, "gateway.example:443")
    assert parse_args(["stats"]).gateway == "gateway.example:443"
    assert parse_args(["stats", "--gateway", "other:1"]).gateway == "other:1"


@pytest.mark.parametrize(
    "argv",
    [
        ["--collection", "music", "--json", "--gateway", "h:1", "--timeout", "2.5", "list"],
        ["list", "--collection", "music", "--json", "--gateway", "h:1", "--timeout", "2.5"],
        ["--json", "--timeout", "2.5", "list", "--gateway", "h:1", "--collection", "music"],
    ],
)
def test_common_options_before_or_after_the_command(argv: list[str]) -> None:
    args = parse_args(argv)
    assert (args.collection, args.json, args.gateway, args.timeout) == ("music", True, "h:1", 2.5)


def test_ingest_options() -> None:
    args = parse_args(
        ["ingest", "a.wav", "dir", "--meta", "k=v", "--meta", "url=http://x/?a=b", "--parallel", "8"]
    )
    assert args.paths == ["a.wav", "dir"]
    assert args.meta == {"k": "v", "url": "http://x/?a=b"}
    assert args.parallel == 8
    assert parse_args(["ingest", "a.wav"]).parallel == 4
    assert parse_args(["ingest", "a.wav"]).meta == {}


def test_search_options() -> None:
    args = parse_args(
        [
            "search",
            "q.wav",
            "--top-k",
            "3",
            "--min-score",
            "0.5",
            "--tag",
            "Dog",
            "--tag",
            "Bark",
            "--meta",
            "a=1",
        ]
    )
    assert (args.file, args.top_k, args.min_score) == ("q.wav", 3, 0.5)
    assert args.tag == ["Dog", "Bark"]
    assert args.meta == {"a": "1"}
    assert parse_args(["search", "q.wav"]).min_score is None


def test_list_and_calibrate_options() -> None:
    args = parse_args(["list", "--all", "--page-size", "10", "--tag", "Music", "--meta", "k=v"])
    assert (args.all, args.page_size, args.tag, args.meta) == (True, 10, ["Music"], {"k": "v"})
    assert parse_args(["calibrate"]).target_fpr == 0.01
    assert parse_args(["calibrate", "--target-fpr", "0.05"]).target_fpr == 0.05


def test_collections_positional_name_wins() -> None:
    args = parse_args(
        [
            "collections",
            "create",
            "birds",
            "--collection",
            "ignored",
            "--window",
            "3",
            "--hop",
            "1.5",
            "--threshold",
            "0.7",
            "--description",
            "field recordings",
        ]
    )
    assert args.name == "birds"
    assert commands._collection_name(args) == "birds"
    assert (args.window, args.hop, args.threshold, args.description) == (3.0, 1.5, 0.7, "field recordings")
    assert args.handler is commands.cmd_collections_create
    assert parse_args(["collections", "delete", "birds"]).handler is commands.cmd_collections_delete


@pytest.mark.parametrize(
    "argv",
    [
        ["ingest", "a.wav", "--meta", "novalue"],
        ["ingest", "a.wav", "--meta", "=v"],
        ["ingest", "a.wav", "--parallel", "0"],
        ["ingest"],
        ["search"],
        ["search", "q.wav", "--top-k", "x"],
        ["list", "--timeout", "0"],
        ["collections"],
        ["collections", "create"],
        ["nonsense"],
        [],
    ],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args(argv)
    assert exit_info.value.code == 2
    assert "usage:" in capsys.readouterr().err


@pytest.mark.parametrize("command", [[], *COMMANDS], ids=lambda c: " ".join(c) or "top")
def test_help_everywhere(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_args([*command, "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "usage: audiosearch" in text
    assert "--gateway" in text
