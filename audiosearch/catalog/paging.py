"""Page sizes and opaque page tokens: base64 of the last key a page returned."""

from __future__ import annotations

import base64
import binascii
import json
from typing import TypeVar

from audiosearch.catalog.validation import invalid

DEFAULT_PAGE_SIZE = 50
MAX_PAGE_SIZE = 1000

K = TypeVar("K", str, int)


def page_size(requested: int) -> int:
    if requested < 0:
        raise invalid("page_size", "must not be negative")
    return min(requested or DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)


def encode_token(last_key: str | int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"after": last_key}).encode()).decode()


def decode_token(token: str, key_type: type[K]) -> K | None:
    """The key a page starts after, or None for the first page."""
    if not token:
        return None
    try:
        key = json.loads(base64.urlsafe_b64decode(token.encode()))["after"]
    except (binascii.Error, ValueError, TypeError, KeyError) as error:
        raise invalid("page_token", "not a token this service issued") from error
    if type(key) is not key_type:
        raise invalid("page_token", "not a token this service issued")
    return key
