#!/usr/bin/env bash
# The demo behind `make demo`. Usage: scripts/demo.sh BUILD_DIR [TRAIN_SECONDS]
#
# 1. Scenes composed from Debian's Fashion-MNIST: 4000 training scenes from the training items,
#    100 validation scenes from the held-out test items (64x64, 3-5 items of 28-32 px; class
#    masks + COCO JSON).
# 2. A U-Net (examples/configs/unet_demo.json) trained for TRAIN_SECONDS (default 150) on the CPU.
# 3. `ostrov eval` on the validation scenes (JSON on stdout), `ostrov predict` writing masks and
#    overlays for eight validation images, and build/demo/figure.png (examples/
#    segmentation_figure.cpp): input | ground truth | prediction | errors, legend, loss curves.
# 4. torchvision's ResNet-18 state_dict (saved by Debian's Python torchvision with random
#    weights: nothing is downloaded) loaded from C++ with no renaming; PyTorch's top-5 on the
#    same image printed beside ostrov's.
set -euo pipefail
build="${1:-build}"
seconds="${2:-150}"
root="$(cd "$(dirname "$0")/.." && pwd)"
out="$build/demo"
cli="$build/bin/ostrov"
mkdir -p "$out"

echo "== ostrov info"
"$cli" info
echo

echo "== scenes from Fashion-MNIST -> $out/scenes/{train,val}"
scenes=(--size 64x64 --min-items 3 --max-items 5 --min-scale 28 --max-scale 32)
"$cli" make-scenes --count 4000 --out "$out/scenes/train" --seed 1 --split train "${scenes[@]}"
"$cli" make-scenes --count 100 --out "$out/scenes/val" --seed 2 --split test "${scenes[@]}"
echo

echo "== ostrov train (U-Net, ${seconds} s) -> $out/unet"
config="$root/examples/configs/unet_demo.json"
sets=(--set "data.train.root=$out/scenes/train" --set "data.val.root=$out/scenes/val")
"$cli" train "$config" --out "$out/unet" --force "${sets[@]}" --set "train.time_limit_s=$seconds"
echo

echo "== ostrov eval (best checkpoint, held-out scenes)"
"$cli" eval --checkpoint "$out/unet/best.pt" "${sets[@]}" | tee "$out/eval.json"
echo

echo "== ostrov predict (8 validation images) -> $out/predictions"
rm -rf "$out/predict_input" && mkdir -p "$out/predict_input"
ls "$out/scenes/val/images" | head -8 | while read -r f; do cp "$out/scenes/val/images/$f" "$out/predict_input/"; done
"$cli" predict --checkpoint "$out/unet/best.pt" --input "$out/predict_input" \
    --output "$out/predictions"
echo

echo "== figure -> $out/figure.png"
"$build/examples/segmentation_figure" "$out/unet/best.pt" "$out/scenes/val" "$out/figure.png" \
    --count 6 --loss-plot "$out/unet/loss.png"
echo

echo "== torchvision resnet18 state_dict -> ostrov (no Python at run time)"
weights="$out/resnet18.pth"
/usr/bin/python3 - "$weights" "$root/data/chelsea.png" <<'PY'
import os, sys, torch, torchvision
from PIL import Image
path, image = sys.argv[1:3]
torch.manual_seed(0)
m = torchvision.models.resnet18(weights=None).eval()
torch.save(m.state_dict(), path)
small = os.path.join(os.path.dirname(path), "chelsea224.png")
resized = Image.open(image).convert("RGB").resize((224, 224), Image.BILINEAR)
resized.info.pop("icc_profile", None)  # libpng warns about the original's sRGB profile
resized.save(small)
x = torchvision.transforms.functional.to_tensor(Image.open(small))
x = torchvision.transforms.functional.normalize(x, [0.485, 0.456, 0.406], [0.229, 0.224, 0.225])
with torch.no_grad():
    p = m(x[None]).softmax(1)[0]
v, i = p.topk(5)
print("PyTorch top-5:", " ".join(f"{int(c)}:{float(s):.5f}" for s, c in zip(v, i)))
PY
"$build/examples/load_torchvision_weights" --arch resnet18 --weights "$weights" \
    --image "$out/chelsea224.png" --top 5
echo "(random weights: the classes mean nothing; the point is that both agree)"
echo
miou=$(/usr/bin/python3 -c 'import json,sys; print("%.3f" % json.load(open(sys.argv[1]))["miou"])' "$out/eval.json")
echo "Held-out mIoU: $miou (11 classes with background; per class in $out/eval.json)"
echo "Figure: $out/figure.png"
echo "Also: $out/unet/metrics.jsonl, $out/unet/loss.png, $out/predictions/*_overlay.png"
