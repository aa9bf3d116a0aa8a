#!/usr/bin/env bash
# Runs an example binary; it checks its own results and exits non-zero on
# failure.
set -euo pipefail
exec "$1"
