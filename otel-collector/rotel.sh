#!/usr/bin/env bash
# The OTLP collector our tests use: rotel (PyPI, pre-release), which ships its binary.
#   pip install --pre rotel
# It prints every received metric (names, attributes, values, resource) to stdout.
# Usage: otel-collector/rotel.sh [GRPC_PORT] [HTTP_PORT]
set -euo pipefail
grpc=${1:-4317}
http=${2:-4318}
python=${PYTHON:-python3}
agent="$("$python" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')"
exec env NO_COLOR=1 "$agent" start \
  --otlp-grpc-endpoint "127.0.0.1:${grpc}" \
  --otlp-http-endpoint "127.0.0.1:${http}" \
  --exporter blackhole \
  --debug-log metrics --debug-log-verbosity detailed
