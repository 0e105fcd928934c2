#!/usr/bin/env bash
# CTest's cuda.tests: the Catch2 test cases tagged [cuda] when this LibTorch sees a CUDA device,
# otherwise exit 77, which CTest reports as "Skipped" (SKIP_RETURN_CODE) rather than passed.
# Usage: run_cuda_tests.sh OSTROV_CLI OSTROV_TESTS
set -euo pipefail
cli="$1" tests="$2"
info="$("$cli" info --json)"
if [[ "$info" != *'"cuda":true'* ]]; then
  echo "skipped: no CUDA device (ostrov info --json: $info)"
  exit 77
fi
exec "$tests" "[cuda]"
