"""Checkpoint verification: every key and shape, the file's sha256, clear errors."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import torch

from audiosearch.embedder.checkpoint import CheckpointError, load_checkpoint, verify_checkpoint
from audiosearch.embedder.engine import untrained_cnn14


def save_checkpoint(path: Path, state: dict[str, torch.Tensor]) -> Path:
    torch.save({"model": state, "iteration": 0}, path)
    return path


@pytest.fixture(scope="module")
def own_state() -> dict[str, torch.Tensor]:
    return untrained_cnn14(seed=3).state_dict()


def test_a_saved_state_dict_verifies_and_reports_the_file_sha256(tmp_path: Path, own_state: dict) -> None:
    path = save_checkpoint(tmp_path / "cnn14.pth", own_state)

    verified = verify_checkpoint(path)

    assert verified.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert verified.size_bytes == path.stat().st_size


def test_a_wrong_shape_is_rejected_naming_the_key_and_both_shapes(tmp_path: Path, own_state: dict) -> None:
    state = dict(own_state)
    state["fc_audioset.weight"] = torch.zeros(10, 2048)
    path = save_checkpoint(tmp_path / "cnn14_10classes.pth", state)

    with pytest.raises(
        CheckpointError, match=r"fc_audioset\.weight has shape \(10, 2048\), expected \(527, 2048\)"
    ):
        verify_checkpoint(path)


def test_missing_and_unexpected_keys_are_listed(tmp_path: Path, own_state: dict) -> None:
    state = {key: value for key, value in own_state.items() if not key.startswith("conv_block6.")}
    state["att_block.att.weight"] = torch.zeros(1)
    path = save_checkpoint(tmp_path / "other_model.pth", state)

    with pytest.raises(CheckpointError) as raised:
        verify_checkpoint(path)

    message = str(raised.value)
    assert "12 missing keys: conv_block6.bn1.bias" in message
    assert "1 unexpected keys: att_block.att.weight" in message


def test_an_unexpected_sha256_is_rejected(tmp_path: Path, own_state: dict) -> None:
    path = save_checkpoint(tmp_path / "cnn14.pth", own_state)

    with pytest.raises(CheckpointError, match="expected 0000"):
        verify_checkpoint(path, expected_sha256="0" * 64)


def test_a_missing_file_says_how_to_get_one(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match=r"not found.*fetch_weights"):
        verify_checkpoint(tmp_path / "absent.pth")


def test_a_file_that_is_no_state_dict_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "garbage.pth"
    path.write_bytes(b"not a torch file")

    with pytest.raises(CheckpointError, match="cannot read"):
        load_checkpoint(path)


def test_a_bare_state_dict_is_accepted_too(tmp_path: Path, own_state: dict) -> None:
    path = tmp_path / "bare.pth"
    torch.save(own_state, path)

    _, state = load_checkpoint(path)

    assert torch.equal(state["fc1.weight"], own_state["fc1.weight"])
