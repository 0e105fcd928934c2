#!/usr/bin/env bash
# Installs the build tree into a prefix, then configures, builds and runs an outside project
# that finds it with find_package(ostrov); the installed CLI trains a tiny U-Net whose
# checkpoint the project predicts with. Args: BUILD_DIR PROJECT_DIR WORK_DIR
set -euo pipefail
build="$1"; project="$2"; work="$3"
rm -rf "$work"
cmake --install "$build" --prefix "$work/prefix" > "$work.install.log" 2>&1 || { cat "$work.install.log"; exit 1; }
cmake -S "$project" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release \
  ${CMAKE_CXX_COMPILER_LAUNCHER:+-DCMAKE_CXX_COMPILER_LAUNCHER=$CMAKE_CXX_COMPILER_LAUNCHER}
cmake --build "$work/build" -j 2
cli="$work/prefix/bin/ostrov"
"$cli" make-scenes --count 4 --size 64x64 --seed 1 --out "$work/scenes"
"$cli" train "$project/../../examples/configs/unet_scenes.json" --out "$work/unet" \
  --set data.train.root="$work/scenes" --set data.val.root="$work/scenes" \
  --set 'data.image_size=[32,32]' --set model.depth=2 --set model.base_width=4 \
  --set train.max_steps=1 --set train.batch_size=2 --set train.workers=0
"$work/build/app" "$work/unet/last.pt" "$work/scenes/images/scene_000001.png"
