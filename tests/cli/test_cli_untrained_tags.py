"""Tags of an untrained model are printed as such: a note beside the text, `model_untrained` in the JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from audiosearch.cli import commands
from audiosearch.cli import main as cli
from audiosearch.v1 import audiosearch_pb2 as pb

UNTRAINED = pb.ModelIdentity(name="panns_cnn14", version="untrained-seed0", embedding_dim=2048, sample_rate_hz=32000,
                             untrained=True)
TRAINED = pb.ModelIdentity(name="panns_cnn14", version="sha256=abcd", embedding_dim=2048, sample_rate_hz=32000)
SIREN = pb.Tag(label="Fire engine, fire truck (siren)", score=0.51)
RECORD = pb.AudioRecord(id="a" * 32, collection="games", name="jump.wav", tags=[SIREN], status=pb.AUDIO_STATUS_READY)
NOTE = "note: model panns_cnn14 untrained-seed0 is untrained (a seeded random init): its tags are not classifications"


class FakeClient:
    """Answers every command as a gateway whose embedder serves `model`."""

    def __init__(self, model: pb.ModelIdentity) -> None:
        self.model = model

    def get_collection(self, name: str) -> pb.Collection:
        return pb.Collection(name=name, model=self.model)

    def tag(self, audio: bytes, top_k: int = 0) -> pb.TagAudioResponse:
        return pb.TagAudioResponse(tags=[SIREN], duration_seconds=1.0, model=self.model,
                                   segments=[pb.SegmentTags(range=pb.TimeRange(end_seconds=1.0), tags=[SIREN])])

    def search(self, collection: str, audio: bytes, **_options: object) -> pb.SearchAudioResponse:
        return pb.SearchAudioResponse(matches=[pb.Match(audio=RECORD, score=0.9)], score_threshold=0.5,
                                      query_duration_seconds=1.0, query_tags=[SIREN], model=self.model)

    def list_audio(self, collection: str, **_options: object) -> pb.ListAudioResponse:
        return pb.ListAudioResponse(audios=[RECORD])

    def get_audio(self, collection: str, audio_id: str) -> pb.AudioRecord:
        return RECORD

    def stats(self, collection: str) -> pb.GetCollectionStatsResponse:
        return pb.GetCollectionStatsResponse(audio_count=1, tags=[pb.TagStatistics(label=SIREN.label, audio_count=1)])


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    path = tmp_path / "clip.wav"
    path.write_bytes(b"RIFF")
    return path


def run_with(model: pb.ModelIdentity, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> int:
    @contextmanager
    def connected(_args: object) -> Iterator[FakeClient]:
        yield FakeClient(model)

    monkeypatch.setattr(commands, "connected", connected)
    return cli.run(cli.parse_args(["--collection", "games", *argv]))


COMMANDS = [["tag", "{clip}"], ["search", "{clip}"], ["list"], ["get", "a" * 32], ["stats"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_tags_of_an_untrained_model_come_with_a_note(command, clip, monkeypatch, capsys) -> None:
    assert run_with(UNTRAINED, [part.format(clip=clip) for part in command], monkeypatch) == 0
    captured = capsys.readouterr()
    assert SIREN.label in captured.out
    assert captured.err.splitlines() == [NOTE]
    assert "note:" not in captured.out  # stdout stays the table alone


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_tags_of_a_trained_model_come_without_one(command, clip, monkeypatch, capsys) -> None:
    assert run_with(TRAINED, [part.format(clip=clip) for part in command], monkeypatch) == 0
    captured = capsys.readouterr()
    assert SIREN.label in captured.out
    assert captured.err == ""


@pytest.mark.parametrize("command", [c for c in COMMANDS if c[0] != "get"], ids=lambda c: c[0])
@pytest.mark.parametrize("model", [UNTRAINED, TRAINED], ids=["untrained", "trained"])
def test_json_says_whether_the_model_is_untrained(command, model, clip, monkeypatch, capsys) -> None:
    assert run_with(model, ["--json", *(part.format(clip=clip) for part in command)], monkeypatch) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["model_untrained"] is model.untrained
    assert captured.err == ""


def test_no_note_where_no_tag_is_printed(monkeypatch, capsys) -> None:
    monkeypatch.setattr(FakeClient, "list_audio", lambda *_args, **_kw: pb.ListAudioResponse())
    assert run_with(UNTRAINED, ["list"], monkeypatch) == 0
    assert capsys.readouterr().err == ""
