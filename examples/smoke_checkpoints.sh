#!/usr/bin/env bash
# CTest fixture of the Predictor examples: a U-Net and a light SSD trained for two steps on
# eight tiny scenes, so that segment_image and detect_objects run on real checkpoints.
# Usage: smoke_checkpoints.sh OSTROV_CLI SOURCE_DIR OUT_DIR
set -euo pipefail
cli="$1" src="$2" out="$3"
rm -rf "$out"
"$cli" make-scenes --count 8 --size 64x64 --seed 1 --out "$out/scenes"
tiny=(--set train.max_steps=2 --set train.batch_size=2 --set train.workers=0
      --set train.log_every=1)
"$cli" train "$src/examples/configs/unet_scenes.json" --out "$out/unet" "${tiny[@]}" \
  --set data.train.root="$out/scenes" --set data.val.root="$out/scenes" \
  --set 'data.image_size=[64,64]' --set model.depth=2 --set model.base_width=4
"$cli" train "$src/examples/configs/ssd_light_scenes.json" --out "$out/ssd" "${tiny[@]}" \
  --set data.train.annotations="$out/scenes/instances.json" --set data.train.images="$out/scenes/images" \
  --set data.val.annotations="$out/scenes/instances.json" --set data.val.images="$out/scenes/images" \
  --set model.image_size=64
