"""Makes API keys for the gateway.

    python -m audiosearch.gateway.api.apikeys new --name X --collections a,b --access write

Prints the new key once (only its sha256 is ever stored) and the entry to add to GATEWAY_API_KEYS_FILE.
`hash` prints the sha256 of an existing key read from stdin; `check FILE` validates a keys file.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
from pathlib import Path

from audiosearch.gateway.api.auth import ALL_COLLECTIONS, ApiKey, KeysFileError, hash_key, load_keys

KEY_PREFIX = "as_"


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def entry(name: str, key: str, collections: list[str], access: str) -> ApiKey:
    return ApiKey(name=name, sha256=hash_key(key), collections=tuple(collections), access=access)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m audiosearch.gateway.api.apikeys", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new", help="make a key and print it with its keys-file entry")
    new.add_argument("--name", required=True, help="shows in the gateway's logs")
    new.add_argument("--collections", default=ALL_COLLECTIONS, help=f"comma-separated, or {ALL_COLLECTIONS} (all)")
    new.add_argument("--access", choices=["read", "write"], default="read", help="write includes read")
    commands.add_parser("hash", help="print the sha256 of a key read from stdin")
    check = commands.add_parser("check", help="validate a keys file")
    check.add_argument("file", type=Path)
    args = parser.parse_args(argv)

    if args.command == "hash":
        print(hash_key(sys.stdin.readline().strip()))
        return 0
    if args.command == "check":
        try:
            keys = load_keys(args.file)
        except (OSError, KeysFileError) as error:
            print(error, file=sys.stderr)
            return 1
        print(f"{args.file}: {len(keys)} keys: " + ", ".join(sorted(key.name for key in keys.values())))
        return 0
    key = new_key()
    collections = [name.strip() for name in args.collections.split(",") if name.strip()]
    try:
        record = entry(args.name, key, collections, args.access)
    except ValueError as error:
        print(error, file=sys.stderr)
        return 2
    print(f"API key for {args.name} (shown once; store it now, only its hash is kept):\n  {key}\n")
    print("add this entry to the keys file's `keys` list (JSON; as YAML, the same inside `- `):")
    print("  " + json.dumps(record.model_dump(mode="json")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
