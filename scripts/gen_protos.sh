#!/usr/bin/env bash
# Regenerates the Python stubs of protos/ inside the audiosearch package (committed, so installs need no protoc):
# audiosearch/v1 (public), audiosearch/catalog/v1 and audiosearch/search/v1 (internal), beside the services.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
[[ $python = /* ]] || python=$PWD/$python
mapfile -t files < <(cd protos && find audiosearch -name '*.proto' | sort)
mapfile -t dirs < <(printf '%s\n' "${files[@]}" | xargs -n1 dirname | sort -u)
for dir in "${dirs[@]}"; do rm -f "$dir"/*_pb2.py "$dir"/*_pb2.pyi "$dir"/*_pb2_grpc.py; done
(cd protos && "$python" -m grpc_tools.protoc -I . --python_out="$OLDPWD" \
  --pyi_out="$OLDPWD" --grpc_python_out="$OLDPWD" "${files[@]}")
for dir in "${dirs[@]}"; do touch "$dir/__init__.py"; done
