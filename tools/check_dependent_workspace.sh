#!/usr/bin/env bash
# Builds and runs examples/dependent_workspace, a separate Bazel workspace
# that depends on greenrt through local_repository, to show that
# `@greenrt//:green` and `#include "green/green.h"` work for dependents.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root/examples/dependent_workspace"
output=$("$root/tools/bazel" run --ui_event_filters=-info --noshow_progress //:hello)
echo "$output"
"$root/tools/bazel" shutdown  # its own Bazel server; do not leave it running
[[ "$output" == *"dependent workspace: 42"* ]]
