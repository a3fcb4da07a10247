#!/usr/bin/env bash
# Regenerates the Python stubs of protos/ into gen/python (committed, so installs need no protoc).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[[ $python = /* ]] || python=$PWD/$python
out=gen/python
rm -rf "$out/audiosearch"
mkdir -p "$out"
mapfile -t files < <(cd protos && find audiosearch -name '*.proto' | sort)
(cd protos && "$python" -m grpc_tools.protoc -I . --python_out="$OLDPWD/$out" \
  --pyi_out="$OLDPWD/$out" --grpc_python_out="$OLDPWD/$out" "${files[@]}")
find "$out/audiosearch" -type d -exec touch {}/__init__.py \;
