"""Labels in Milvus rows: a recording's tags and metadata as tokens, so that a tag/metadata filter is one Milvus
expression over the rows it searches instead of a list of recording ids carried between services.

Each tag and each metadata pair becomes a token, a hash of its kind and its text, and a row holds its recording's
tokens in an ARRAY of VARCHAR (`labels`). A filter is `array_contains_all(labels, [its tokens])`: the recording
carries every tag and every pair, exactly as written, as the catalog's filter reads them. Tokens are hexadecimal, so
no user text ever reaches an expression: a tag or a value holding quotes or backslashes needs no escaping.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence

from audiosearch.catalog.validation import MAX_METADATA_ENTRIES, MAX_TAGS

LABELS_FIELD = "labels"
TOKEN_CHARS = 32
MAX_LABELS = MAX_TAGS + MAX_METADATA_ENTRIES


def label_tokens(tags: Iterable[str], metadata: Mapping[str, str]) -> list[str]:
    """The tokens of a recording's tags and metadata pairs, each once, in a stable order."""
    tokens = [_token("tag", tag) for tag in tags] + [_token("metadata", key, value) for key, value in metadata.items()]
    return sorted(set(tokens))


def label_filter(tags: Sequence[str], metadata: Mapping[str, str]) -> str:
    """The Milvus expression of a filter; empty when it filters nothing."""
    tokens = label_tokens(tags, metadata)
    return f"array_contains_all({LABELS_FIELD}, {json.dumps(tokens)})" if tokens else ""


def both(*expressions: str) -> str:
    """The conjunction of Milvus expressions, leaving out empty ones."""
    present = [expression for expression in expressions if expression]
    if len(present) <= 1:
        return present[0] if present else ""
    return " and ".join(f"({expression})" for expression in present)


def _token(*parts: str) -> str:
    digest = hashlib.blake2b("\0".join(parts).encode(), digest_size=TOKEN_CHARS // 2)
    return digest.hexdigest()
