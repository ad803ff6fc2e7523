#!/bin/sh
# AWS's tutorial runtime in POSIX sh with curl, strict as its `set -euo pipefail` makes it: any
# failed call (an HTTP error included, `curl -f`) ends the runtime. It echoes each event back,
# ANSWER_DELAY seconds after it got it.
set -eu
API="http://${AWS_LAMBDA_RUNTIME_API}/2018-06-01/runtime"
HEADERS=$(mktemp)
while true; do
  EVENT=$(curl -sSf -D "$HEADERS" "$API/invocation/next")
  ID=$(grep -i '^lambda-runtime-aws-request-id:' "$HEADERS" | tr -d '\r' | cut -d' ' -f2)
  sleep "${ANSWER_DELAY:-0}"
  curl -sSf -o /dev/null -X POST --data-binary "$EVENT" "$API/invocation/$ID/response"
done
