#!/usr/bin/env bash
# Runs each libFuzzer target of BUILD_DIR (built by `cmake --preset fuzz` + the fuzz_all
# target) for SECONDS, starting from fuzz/corpus/<target>/ and growing BUILD_DIR/corpus/<target>/.
# Crash inputs go to BUILD_DIR/crashes/; copy each into fuzz/corpus/<target>/ once fixed, so the
# replay test (ctest -R fuzz.replay) keeps it fixed. Usage: scripts/fuzz.sh BUILD_DIR [SECONDS] [TARGET...]
set -uo pipefail
build="${1:-build-fuzz}"
seconds="${2:-60}"
shift $(( $# > 2 ? 2 : $# ))
root="$(cd "$(dirname "$0")/.." && pwd)"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(coco_json rle polygon config state_dict image)
# LibTorch is not instrumented: its allocations freed by instrumented code (and the reverse)
# look mismatched to ASan, and its global objects are registered twice through the shared
# libraries; neither is a bug in ostrov.
export ASAN_OPTIONS="${ASAN_OPTIONS:-alloc_dealloc_mismatch=0:detect_odr_violation=0:detect_leaks=0}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
mkdir -p "$build/crashes"
failed=()
for t in "${targets[@]}"; do
  exe="$build/fuzz/fuzz_$t"
  [ -x "$exe" ] || { echo "fuzz.sh: $exe is missing (make fuzz builds it)" >&2; exit 2; }
  mkdir -p "$build/corpus/$t"
  echo "== fuzz_$t for ${seconds} s"
  if ! "$exe" -max_total_time="$seconds" -rss_limit_mb=4096 -timeout=20 -print_final_stats=1 \
       -artifact_prefix="$build/crashes/$t-" "$build/corpus/$t" "$root/fuzz/corpus/$t" \
       > "$build/fuzz_$t.log" 2>&1; then
    failed+=("$t")
    tail -40 "$build/fuzz_$t.log"
  fi
  grep -E "^stat::(number_of_executed_units|new_units_added)|^#[0-9]+.*DONE" "$build/fuzz_$t.log" | tail -3
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: findings in: ${failed[*]} (inputs in $build/crashes/)" >&2
  exit 1
fi
echo "fuzz.sh: ${#targets[@]} targets, ${seconds} s each, no findings"
