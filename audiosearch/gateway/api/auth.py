"""API keys: who may call the gateway, on which collections, with which rights.

The keys file (GATEWAY_API_KEYS_FILE), JSON or YAML, holds only sha256 hashes of the keys:

    keys:
      - name: ingest-bot                 # shows in the logs; the key itself never does
        sha256: 9f86d081884c7d65...      # hex sha256 of the key
        collections: [library, jingles]  # or ["*"] for every collection
        access: write                    # read | write (write includes read)

`python -m audiosearch.gateway.api.apikeys new --name ingest-bot --collections library,jingles --access write` makes a
key and prints the entry. A call carries its key as `authorization: Bearer <key>` or `x-api-key: <key>`. A
call without a valid key gets UNAUTHENTICATED; a call outside the key's collections or rights gets
PERMISSION_DENIED; both are logged with the key's name. Health and reflection stay open. The file is read again
when it changes, so keys are added and revoked without a restart. With no file configured the gateway is open,
which is for local use only and logged as a warning at start-up.
"""

from __future__ import annotations

import enum
import hashlib
import json
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from audiosearch.common.errors import PermissionDenied, Unauthenticated
from audiosearch.common.interception import CallInterceptor, split_method

log = logging.getLogger("audiosearch.auth")

ALL_COLLECTIONS = "*"
_RELOAD_CHECK_SECONDS = 2.0
_BEARER = re.compile(r"^\s*bearer\s+(\S+)\s*$", re.IGNORECASE)


class Access(enum.StrEnum):
    READ = "read"
    WRITE = "write"


class ApiKey(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    collections: tuple[str, ...] = Field(min_length=1)
    access: Access

    @field_validator("sha256", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("collections")
    @classmethod
    def _names(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name != ALL_COLLECTIONS and not re.fullmatch(r"[a-z][a-z0-9_]{0,62}", name):
                raise ValueError(f"{name!r} is neither a collection name nor {ALL_COLLECTIONS!r}")
        return value

    def sees(self, collection: str) -> bool:
        return ALL_COLLECTIONS in self.collections or collection in self.collections

    def may(self, access: Access) -> bool:
        return self.access == Access.WRITE or access == Access.READ


class KeysFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    keys: list[ApiKey]

    @model_validator(mode="after")
    def _unique(self) -> KeysFile:
        for field in ("name", "sha256"):
            values = [getattr(key, field) for key in self.keys]
            duplicates = sorted({value for value in values if values.count(value) > 1})
            if duplicates:
                raise ValueError(f"duplicate key {field}: {', '.join(duplicates)}")
        return self


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


class KeysFileError(ValueError):
    pass


def load_keys(path: Path) -> dict[str, ApiKey]:
    """The keys of a JSON or YAML keys file (a list, or a mapping with `keys`), by sha256."""
    text = path.read_text()
    try:
        content = _parse_yaml(path, text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
        parsed = KeysFile.model_validate({"keys": content} if isinstance(content, list) else content)
    except KeysFileError:
        raise
    except (ValueError, ValidationError) as error:
        raise KeysFileError(f"{path}: {error}") from error
    return {key.sha256: key for key in parsed.keys}


def _parse_yaml(path: Path, text: str) -> object:
    try:
        import yaml  # PyYAML: optional; the images carry no YAML parser, JSON keys files always work
    except ImportError as error:
        raise KeysFileError(f"{path}: reading YAML needs PyYAML (pip install pyyaml); or write the file as JSON"
                            ) from error
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise KeysFileError(f"{path}: {error}") from error


class KeyStore:
    """The keys of one file, read again when the file changes (a bad new version keeps the old keys)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp = self._stat()
        self._keys = load_keys(path)
        self._checked_at = time.monotonic()

    def __len__(self) -> int:
        return len(self._keys)

    def find(self, key: str) -> ApiKey | None:
        self._reload_if_changed()
        return self._keys.get(hash_key(key))

    def _stat(self) -> tuple[int, int]:
        stat = os.stat(self._path)
        return stat.st_mtime_ns, stat.st_size

    def _reload_if_changed(self) -> None:
        if time.monotonic() - self._checked_at < _RELOAD_CHECK_SECONDS:
            return
        with self._lock:
            self._checked_at = time.monotonic()
            try:
                stamp = self._stat()
                if stamp != self._stamp:
                    self._keys, self._stamp = load_keys(self._path), stamp
                    log.info("API keys reloaded", extra={"path": str(self._path), "keys": len(self._keys)})
            except (OSError, KeysFileError) as error:
                log.error("API keys file unreadable; keeping the keys read before", extra={"error": str(error)})


@dataclass(frozen=True)
class Rule:
    access: Access
    collection: Callable[[Any], str] | None = None  # the collection a request names; None: no single one


def _name(request: Any) -> str:
    return request.name


def _collection(request: Any) -> str:
    return request.collection


# Every RPC of the public API with the right it needs. An RPC missing here is refused for every key
# (tests/gateway/test_auth.py checks that the table covers the service).
RULES: dict[str, Rule] = {
    "CreateCollection": Rule(Access.WRITE, _name),
    "GetCollection": Rule(Access.READ, _name),
    "ListCollections": Rule(Access.READ),  # the reply is narrowed to the key's collections
    "DeleteCollection": Rule(Access.WRITE, _name),
    "IngestAudio": Rule(Access.WRITE),  # the collection is in the header, the stream's first message
    "SearchAudio": Rule(Access.READ, _collection),
    "TagAudio": Rule(Access.READ),  # stores nothing and reads no collection
    "GetAudio": Rule(Access.READ, _collection),
    "ListAudio": Rule(Access.READ, _collection),
    "DeleteAudio": Rule(Access.WRITE, _collection),
    "GetCollectionStats": Rule(Access.READ, _collection),
    "CalibrateCollection": Rule(Access.WRITE, _collection),
    "GetAudioContent": Rule(Access.READ, _collection),
    "ImportAudio": Rule(Access.WRITE),  # like IngestAudio: the collection is in the stream's header
    "ImportDirectory": Rule(Access.WRITE, _collection),
    "MonitorAudio": Rule(Access.READ),  # searches only; the collection is in the stream's header
}


def presented_key(context: grpc.ServicerContext) -> str | None:
    for name, value in context.invocation_metadata() or ():
        if name == "authorization" and isinstance(value, str) and (bearer := _BEARER.match(value)):
            return bearer.group(1)
        if name == "x-api-key" and isinstance(value, str) and value.strip():
            return value.strip()
    return None


class ApiKeyInterceptor(CallInterceptor):
    """Authenticates every call of the public API by its key and checks the key's collections and rights."""

    def __init__(self, store: KeyStore) -> None:
        self._store = store

    def wrap(self, handler: grpc.RpcMethodHandler, method: str) -> grpc.RpcMethodHandler:
        _, name = split_method(method)
        rule = RULES.get(name)
        if handler.unary_unary:
            return handler._replace(unary_unary=self._unary(handler.unary_unary, name, rule))
        if handler.unary_stream:
            return handler._replace(unary_stream=self._unary(handler.unary_stream, name, rule))
        if handler.stream_unary:
            return handler._replace(stream_unary=self._stream(handler.stream_unary, name, rule))
        return handler._replace(stream_stream=self._stream(handler.stream_stream, name, rule))

    def _unary(self, behaviour: Callable[[Any, grpc.ServicerContext], Any], method: str, rule: Rule | None
               ) -> Callable[..., Any]:
        def checked(request: Any, context: grpc.ServicerContext) -> Any:
            key = self._authenticate(context, method)
            rule_ = self._rule(rule, key, method, context)
            collection = rule_.collection(request) if rule_.collection else None
            self._authorize(key, rule_.access, collection, method, context)
            response = behaviour(request, context)
            return _visible_collections(response, key) if method == "ListCollections" else response

        return checked

    def _stream(self, behaviour: Callable[[Any, grpc.ServicerContext], Any], method: str, rule: Rule | None
                ) -> Callable[..., Any]:
        def checked(requests: Iterator[Any], context: grpc.ServicerContext) -> Any:
            key = self._authenticate(context, method)
            rule_ = self._rule(rule, key, method, context)
            return behaviour(self._scoped(requests, key, rule_, method, context), context)

        return checked

    def _scoped(self, requests: Iterator[Any], key: ApiKey, rule: Rule, method: str,
                context: grpc.ServicerContext) -> Iterator[Any]:
        """Checks the collection of an upload's header (its first message) before the servicer sees it."""
        first = True
        for request in requests:
            if first:
                first = False
                header = getattr(request, "header", None) if request.WhichOneof("payload") == "header" else None
                self._authorize(key, rule.access, header.collection if header else None, method, context)
            yield request

    def _authenticate(self, context: grpc.ServicerContext, method: str) -> ApiKey:
        presented = presented_key(context)
        if presented is None:
            _refused("no API key", method, context, None)
            raise Unauthenticated("this gateway needs an API key: send `authorization: Bearer <key>` or "
                                  "`x-api-key: <key>`", reason="UNAUTHENTICATED")
        key = self._store.find(presented)
        if key is None:
            _refused("unknown API key", method, context, None)
            raise Unauthenticated("the API key is not valid", reason="UNAUTHENTICATED")
        return key

    @staticmethod
    def _rule(rule: Rule | None, key: ApiKey, method: str, context: grpc.ServicerContext) -> Rule:
        if rule is None:
            _refused("no rights defined for this method", method, context, key)
            raise PermissionDenied(f"{method} is not open to API keys", reason="PERMISSION_DENIED", method=method)
        return rule

    @staticmethod
    def _authorize(key: ApiKey, access: Access, collection: str | None, method: str,
                   context: grpc.ServicerContext) -> None:
        if not key.may(access):
            _refused(f"needs {access} access", method, context, key, collection)
            raise PermissionDenied(f"the API key {key.name!r} may only read; {method} writes",
                                   reason="PERMISSION_DENIED", key=key.name, method=method)
        if collection is not None and not key.sees(collection):
            _refused("collection out of scope", method, context, key, collection)
            raise PermissionDenied(f"the API key {key.name!r} has no access to collection {collection[:80]!r}",
                                   reason="PERMISSION_DENIED", key=key.name, collection=collection[:80])


def _visible_collections(response: Any, key: ApiKey) -> Any:
    if ALL_COLLECTIONS in key.collections:
        return response
    visible = [collection for collection in response.collections if key.sees(collection.name)]
    del response.collections[:]
    response.collections.extend(visible)
    return response


def _refused(why: str, method: str, context: grpc.ServicerContext, key: ApiKey | None,
             collection: str | None = None) -> None:
    log.warning("call refused", extra={"why": why, "method": method, "peer": context.peer(),
                                       "key": key.name if key else None,
                                       "collection": collection[:80] if collection else None})


def open_store(path: Path | None) -> KeyStore | None:
    """The key store of the configured file, or None (an open gateway, with a warning)."""
    if path is None:
        log.warning("no API keys file configured (GATEWAY_API_KEYS_FILE): the gateway accepts every call; "
                    "use this for local development only")
        return None
    try:
        store = KeyStore(path)
    except (OSError, KeysFileError) as error:
        raise SystemExit(f"cannot read the API keys file: {error}") from error
    log.info("API keys required", extra={"path": str(path), "keys": len(store)})
    return store
