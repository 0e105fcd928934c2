#!/usr/bin/env bash
# The PSPNet ablation of docs/results.md: the lecture's rows (bins B1 vs B1236, AVE vs MAX
# pooling, with and without the 1x1 dimension reduction, with and without the auxiliary loss),
# each trained with the same time budget on the same scenes and evaluated on the held-out ones.
#
#   bash scripts/pspnet_ablation.sh SCENES OUT [SECONDS]
#
# SCENES holds train/ and val/ as written by `ostrov make-scenes` (docs/results.md gives the two
# commands); OUT receives one run directory per row, its eval JSON and table.md. SECONDS is each
# row's training budget (default 600, evaluations included). OSTROV selects the binary (default
# build/bin/ostrov). A row whose eval.json exists is not trained again, so a stopped table
# resumes where it stopped.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
fi
SCENES=$(realpath "$1")
OUT=$2
SECONDS_PER_ROW=${3:-600}
HERE=$(cd "$(dirname "$0")/.." && pwd)
OSTROV=${OSTROV:-$HERE/build/bin/ostrov}
CONFIG=$HERE/examples/configs/pspnet_r18_scenes.json

for split in train val; do
    [[ -d $SCENES/$split ]] || { echo "pspnet_ablation: no $SCENES/$split (make it with ostrov make-scenes)" >&2; exit 2; }
done
[[ -x $OSTROV ]] || { echo "pspnet_ablation: no ostrov binary at $OSTROV (make build, or set OSTROV)" >&2; exit 2; }
mkdir -p "$OUT"

# name | the lecture's row | the options that differ from the config (bins 1-2-3-6, avg, DR, aux)
ROWS=(
    "b1236_ave_dr_aux|B1236, AVE, DR, aux loss (the config)|"
    "b1_ave_dr_aux|B1, AVE, DR, aux loss|--set model.bins=[1]"
    "b1236_max_dr_aux|B1236, MAX, DR, aux loss|--set model.pooling=max"
    "b1236_ave_aux|B1236, AVE, no DR, aux loss|--set model.reduce_dimension=false"
    "b1236_ave_dr|B1236, AVE, DR, no aux loss|--set model.aux=false"
)

COMMON=(--set "data.train.root=$SCENES/train" --set "data.val.root=$SCENES/val"
        --set "train.time_limit_s=$SECONDS_PER_ROW" --set train.epochs=2 --set train.eval_every=1)

for row in "${ROWS[@]}"; do
    IFS='|' read -r name label extra <<< "$row"
    dir=$OUT/$name
    if [[ -s $dir/eval.json ]]; then
        echo "== $name: done before ($dir/eval.json)"
        continue
    fi
    echo "== $name: $label"
    # shellcheck disable=SC2086  # $extra holds zero or more --set options
    "$OSTROV" train "$CONFIG" --out "$dir" --force "${COMMON[@]}" $extra > "$dir.train.log" 2>&1 \
        || { echo "pspnet_ablation: $name failed, see $dir.train.log" >&2; exit 1; }
    "$OSTROV" eval "$CONFIG" --checkpoint "$dir/best.pt" "${COMMON[@]}" $extra > "$dir/eval.json.tmp"
    mv "$dir/eval.json.tmp" "$dir/eval.json"
done

# The table: steps and seconds from the run's last log line, the metrics from its eval.
{
    echo "| row | steps (batch 8) | seconds | mIoU | pixel accuracy |"
    echo "|---|---:|---:|---:|---:|"
    for row in "${ROWS[@]}"; do
        IFS='|' read -r name label extra <<< "$row"
        summary=$(grep -o 'trained [0-9]* steps ([^)]*)' "$OUT/$name.train.log" | tail -1)
        steps=$(sed -E 's/trained ([0-9]+) steps.*/\1/' <<< "$summary")
        seconds=$(sed -E 's/.*epochs?, ([0-9.]+) s.*/\1/' <<< "$summary")
        /usr/bin/env python3 - "$OUT/$name/eval.json" "$label" "$steps" "$seconds" <<'EOF'
import json, sys
path, label, steps, seconds = sys.argv[1:]
m = json.load(open(path))
print(f"| {label} | {steps} | {float(seconds):.0f} | {m['miou']:.3f} | {m['pixel_accuracy']:.3f} |")
EOF
    done
} | tee "$OUT/table.md"
