#!/usr/bin/env bash
# Regenerate the Python code for greet/v1/greet.proto: messages (greet_pb2), grpcio client stubs
# (greet_pb2_grpc, used by client.py) and the connectrpc server and client (greet_connect).
# Needs: pip install -r requirements.txt
set -euo pipefail
cd "$(dirname "$0")"
python -m grpc_tools.protoc -I. \
    --python_out=. --pyi_out=. --grpc_python_out=. \
    --connectrpc_out=. --connectrpc_opt=protobuf=google \
    greet/v1/greet.proto
