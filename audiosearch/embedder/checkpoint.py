"""Loading and verifying a Cnn14 checkpoint file before any weights are trusted."""

from __future__ import annotations

import hashlib
import io
import re
from dataclasses import dataclass
from pathlib import Path

import torch

from audiosearch.embedder.cnn14 import expected_state_shapes

SHA256_PATTERN = re.compile(r"^[0-9a-f]{64}$")
_MAX_LISTED = 12


class CheckpointError(Exception):
    """The checkpoint is missing, unreadable, of another model, or not the expected file."""


@dataclass(frozen=True)
class VerifiedCheckpoint:
    path: Path
    sha256: str
    size_bytes: int


def sha256_file(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def parse_state_dict(data: bytes, source: str) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint saved as {'model': state_dict} (the official layout) or bare."""
    try:
        # weights_only refuses arbitrary pickled code: the file may come from anywhere.
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises a variety of unpickling errors
        raise CheckpointError(f"cannot read {source} as a torch state dict: {exc}") from exc
    if isinstance(payload, dict) and isinstance(payload.get("model"), dict):
        payload = payload["model"]
    if not isinstance(payload, dict) or not all(isinstance(v, torch.Tensor) for v in payload.values()):
        raise CheckpointError(f"{source} holds no state dict ({{'model': state_dict}} expected)")
    return payload


def _listed(items: list[str]) -> str:
    shown = ", ".join(items[:_MAX_LISTED])
    return shown + (f" ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else "")


def state_dict_problems(state_dict: dict[str, torch.Tensor]) -> list[str]:
    """Readable differences between `state_dict` and the official Cnn14 layout; empty when it matches."""
    expected = expected_state_shapes()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    wrong_shape = [
        f"{key} has shape {tuple(state_dict[key].shape)}, expected {expected[key]}"
        for key in sorted(set(expected) & set(state_dict))
        if tuple(state_dict[key].shape) != expected[key]
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys: {_listed(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys: {_listed(unexpected)}")
    if wrong_shape:
        problems.append(f"{len(wrong_shape)} shape mismatches: {_listed(wrong_shape)}")
    return problems


def check_state_dict(state_dict: dict[str, torch.Tensor], source: str) -> None:
    problems = state_dict_problems(state_dict)
    if problems:
        raise CheckpointError(f"{source} is not a PANNs Cnn14 (32 kHz) checkpoint: " + "; ".join(problems))


def load_checkpoint(
    path: Path, expected_sha256: str | None = None
) -> tuple[VerifiedCheckpoint, dict[str, torch.Tensor]]:
    """Read `path` once; check it is the expected file (if given) and a Cnn14 checkpoint (all keys, shapes).

    The bytes hashed are the bytes loaded, so the identity always names the weights actually served.
    """
    if not path.is_file():
        raise CheckpointError(
            f"checkpoint file not found: {path} (download it: `python -m audiosearch.embedder.fetch_weights`)"
        )
    data = path.read_bytes()
    sha256 = hashlib.sha256(data).hexdigest()
    if expected_sha256 and sha256 != expected_sha256.lower():
        raise CheckpointError(f"checkpoint {path} has sha256 {sha256}, expected {expected_sha256.lower()}")
    state_dict = parse_state_dict(data, f"checkpoint {path}")
    check_state_dict(state_dict, f"checkpoint {path}")
    return VerifiedCheckpoint(path=path, sha256=sha256, size_bytes=len(data)), state_dict


def verify_checkpoint(path: Path, expected_sha256: str | None = None) -> VerifiedCheckpoint:
    return load_checkpoint(path, expected_sha256)[0]
