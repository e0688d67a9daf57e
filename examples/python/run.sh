#!/usr/bin/env bash
# Runs the Python example client against a saring server.
#
#   bash examples/python/run.sh [HOST:PORT]    (default 127.0.0.1:50051)
#
# Creates a virtualenv in examples/python/.venv (kept between runs), installs the gRPC packages, generates the
# saring.v1 stubs from proto/ into examples/python/generated/ and runs client.py.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
proto_root="$here/../../proto"
address="${1:-127.0.0.1:50051}"
python="${PYTHON:-python3}"
venv="$here/.venv"

if [[ ! -x "$venv/bin/python" ]]; then
  echo "creating a virtualenv in $venv" >&2
  "$python" -m venv "$venv"
fi

# grpcio-tools generates the stubs; grpcio-health-checking, grpcio-status and googleapis-common-protos decode the
# health answer and the google.rpc.BadRequest details of an INVALID_ARGUMENT.
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check \
  'grpcio>=1.62' \
  'grpcio-tools>=1.62' \
  'grpcio-health-checking>=1.62' \
  'grpcio-status>=1.62' \
  'googleapis-common-protos>=1.62'

# grpc_tools.protoc adds its bundled well-known types (google/protobuf/timestamp.proto) to the include path.
rm -rf "$here/generated"
mkdir -p "$here/generated"
"$venv/bin/python" -m grpc_tools.protoc \
  --proto_path="$proto_root" \
  --python_out="$here/generated" \
  --pyi_out="$here/generated" \
  --grpc_python_out="$here/generated" \
  "$proto_root"/saring/v1/*.proto

exec "$venv/bin/python" "$here/client.py" "$address"
