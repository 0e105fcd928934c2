#!/usr/bin/env bash
# One prepared call on a GPU machine (docs/building.md, "A GPU machine"): unpack the carried
# dependency prefix, build ostrov against the machine's LibTorch, run the whole CTest suite
# (the `cuda` label included), then train U-Net and the light SSD on the GPU for a fixed number
# of steps in fp32 and bf16 beside their PyTorch twins (benchmarks/reference/*_recipe.py).
# Everything it learns goes to $OUT as it goes, so a call cut short still reports.
#
#   scripts/device/run.sh [STAGES]     STAGES: any of build,test,measure (default all three)
#
# One command may run 10 minutes and a task has 15 minutes of device time in all, so call it
# twice on the same warm machine (its build-device/ stays): `run.sh build,test` (timeout 600),
# then `run.sh measure` (about 5 minutes at most: 8 runs of at most 60 s).
#
# Carried with the call (ignored by git; prepared here by `make device-bundle`):
#   deps/device.tar.xz      the prefix of scripts/device/bundle.sh
#   deps/fashion-mnist/     Debian's dataset-fashion-mnist files (read through
#                           OSTROV_FASHION_MNIST where /usr/share/datasets/fashion-mnist is missing)
#   OSTROV_DEVICE_STEPS     training steps per measurement (default 200)
set -uo pipefail
cd "$(dirname "$0")/../.."
out="${OUT:-$PWD/device-out}"
stages="${1:-build,test,measure}"
steps="${OSTROV_DEVICE_STEPS:-200}"
mkdir -p "$out"
log() { echo "[$(date -u +%T)] $*" | tee -a "$out/run.log"; }
has() { [[ ",$stages," == *",$1,"* ]]; }

{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'cxx11abi', torch._C._GLIBCXX_USE_CXX11_ABI)" || true
  gcc --version | head -1
  cmake --version | head -1
  nproc
} > "$out/machine.txt" 2>&1
log "machine: $(tr '\n' ' ' < "$out/machine.txt")"

if [ ! -d deps/device ] && [ -e deps/device.tar.xz ]; then
  tar -xJf deps/device.tar.xz -C deps
fi
if [ -d deps/fashion-mnist ] && [ ! -e /usr/share/datasets/fashion-mnist ]; then
  export OSTROV_FASHION_MNIST="$PWD/deps/fashion-mnist"
fi

if has build; then
  log "build"
  start=$(date +%s)
  if ! scripts/device/build.sh build-device > "$out/build.log" 2>&1; then
    log "build failed after $(( $(date +%s) - start )) s:"
    grep -E "error|Error" "$out/build.log" | head -40 | tee -a "$out/run.log"
    exit 1
  fi
  log "built in $(( $(date +%s) - start )) s"
fi
cli=build-device/bin/ostrov
"$cli" info --json > "$out/info.json" 2>&1
log "ostrov info: $(cat "$out/info.json")"

if has test; then
  log "ctest"
  start=$(date +%s)
  ctest --test-dir build-device -j 8 --timeout 300 --output-on-failure > "$out/ctest.log" 2>&1
  log "ctest exit $? in $(( $(date +%s) - start )) s: $(grep -E "tests passed|tests failed" "$out/ctest.log")"
  grep -A 200 "The following tests" "$out/ctest.log" | head -60 >> "$out/run.log"
  sed -n '/^cuda.tests\|Start .*cuda.tests/,+3p' "$out/ctest.log" | head -10 >> "$out/run.log"
fi

if has measure; then
  # docs/results.md's scene sets, fewer of them: scenes/ (segmentation, 128x128) and det/
  # (detection, 256x256); the configs read ../../scenes, so det/ is linked there for the SSD.
  log "scenes"
  seg=(--size 128x128 --min-items 3 --max-items 10 --min-scale 28 --max-scale 44)
  "$cli" make-scenes --count 800 --out seg/train --seed 1 --split train "${seg[@]}" > /dev/null
  "$cli" make-scenes --count 200 --out seg/val --seed 2 --split test "${seg[@]}" > /dev/null
  "$cli" make-scenes --count 800 --out det/train --seed 1 --split train --min-items 3 --max-items 8 > /dev/null
  "$cli" make-scenes --count 200 --out det/val --seed 2 --split test --min-items 3 --max-items 8 > /dev/null
  for model in unet ssd_light; do
    data=seg
    [ "$model" = ssd_light ] && data=det
    rm -rf scenes && ln -s "$data" scenes
    for precision in fp32 bf16; do
      run="runs/${model}_$precision"
      log "ostrov train $model $precision, $steps steps"
      start=$(date +%s)
      timeout 60 "$cli" train "examples/configs/${model}_scenes.json" --out "$run" --force \
        --set train.device=cuda --set train.precision="$precision" \
        --set train.max_steps="$steps" --set train.workers=6 --set train.log_every=50 \
        > "$out/train_${model}_$precision.log" 2>&1
      log "exit $? in $(( $(date +%s) - start )) s; last records:"
      tail -2 "$run/metrics.jsonl" 2>/dev/null | tee -a "$out/run.log"
      cp "$run/metrics.jsonl" "$out/${model}_$precision.metrics.jsonl" 2>/dev/null
      recipe=seg_recipe.py
      [ "$model" = ssd_light ] && recipe=ssd_recipe.py
      if ! python3 -c "import torchvision" 2> /dev/null; then
        log "PyTorch twin skipped: this Python has no torchvision (benchmarks/reference needs it)"
        continue
      fi
      log "PyTorch twin $model $precision, $steps steps"
      start=$(date +%s)
      timeout 60 python3 "benchmarks/reference/$recipe" train --scenes scenes --total "$steps" \
        --device cuda --precision "$precision" --log "$out/twin_${model}_$precision.jsonl" \
        > "$out/twin_${model}_$precision.log" 2>&1
      log "exit $? in $(( $(date +%s) - start )) s: $(tail -1 "$out/twin_${model}_$precision.jsonl" 2>/dev/null | cut -c1-200)"
    done
  done
fi
log "done"
