"""The segmentation training recipe of `ostrov train examples/configs/unet_scenes.json`, in
PyTorch-Python over the twins in models.py, to ask how far the recipe itself goes with more
steps than this 2-core machine runs in 10 minutes (on a GPU, or on the CPU with patience).

What it mirrors (ostrov file in brackets): the scenes' images resized to 128x128 and normalised
with ImageNet's mean/std, a horizontal flip with p 0.5 (tasks/src/task.cpp default_transforms);
an epoch is a fresh permutation of the training scenes, batch 8; Adam, lr 2e-3, linear warm-up
of 20 steps, then cosine to 0 over `--total` steps (src/train); loss CE + 0.5 SoftDice
(losses/src/segmentation.cpp: squared-denominator Dice over the batch, every class, eps 1e-6);
the validation mIoU from one confusion matrix over all validation pixels (metrics/). With
`--model resnet` it trains models.ResNetUNet (unet_resnet18_scenes.json, from scratch).

    # the scenes of docs/results.md "Trained end to end: segmentation", read as written by `ostrov make-scenes`:
    /usr/bin/python3 benchmarks/reference/seg_recipe.py train --scenes scenes --total 2000 \
        --stop 1778 --eval-every 250 --device cpu
    # a compact copy to carry to another machine (18.5 MB for 2000 + 200 scenes of 128x128):
    # the background's i.i.d. noise (base colour + U{-35..35} per pixel and channel, saturated;
    # src/data/scenes.cpp) is replaced by the base colour and drawn again on loading
    /usr/bin/python3 benchmarks/reference/seg_recipe.py pack --scenes scenes --output scenes.npz
    python3 benchmarks/reference/seg_recipe.py train --packed scenes.npz --total 16000 ...

Each evaluation appends one JSON line (step, miou, pixel accuracy, seconds; per-class IoU at the
end) to --log.
"""
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402
import recipe  # noqa: E402

NUM_CLASSES = 11
SIZE = 128


def read_split(root):
    """(images [N,H,W,3] uint8 RGB, masks [N,H,W] uint8) of an ostrov scene folder."""
    from PIL import Image
    names = sorted(os.listdir(os.path.join(root, "images")))
    if not names:
        raise SystemExit(f"{root}/images: no scenes")
    images, masks = [], []
    for n in names:
        im = Image.open(os.path.join(root, "images", n)).convert("RGB")
        m = Image.open(os.path.join(root, "masks", n))
        if im.size != (SIZE, SIZE):
            im = im.resize((SIZE, SIZE), Image.BILINEAR)
            m = m.resize((SIZE, SIZE), Image.NEAREST)
        images.append(np.asarray(im))
        masks.append(np.asarray(m).astype(np.uint8))
    return np.stack(images), np.stack(masks)


def pack(args):
    out = {}
    for split in ("train", "val"):
        images, masks = read_split(os.path.join(args.scenes, split))
        images = images.copy()
        base = np.zeros((len(images), 3), np.uint8)
        for i in range(len(images)):
            background = masks[i] == 0
            # median of base + U{-35..35} clamped at 0 is the base (base <= 90 < 220)
            base[i] = np.median(images[i][background], axis=0).round()
            images[i][background] = base[i]
        out[split + "_images"], out[split + "_base"], out[split + "_masks"] = images, base, masks
    np.savez_compressed(args.output, **out)
    print(f"{args.output}: {os.path.getsize(args.output) / 1e6:.1f} MB")


def with_noise(rng, images, base, masks):
    noise = rng.integers(-35, 36, size=images.shape, dtype=np.int16)
    noisy = np.clip(base[:, None, None, :].astype(np.int16) + noise, 0, 255).astype(np.uint8)
    return np.where((masks == 0)[..., None], noisy, images)


def train(args):
    dev = torch.device(args.device)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed + 1000)
    mean = torch.tensor([0.485, 0.456, 0.406], device=dev).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=dev).view(1, 3, 1, 1)

    def to_input(u8):
        x = torch.from_numpy(u8).to(dev).permute(0, 3, 1, 2).float() / 255.0
        return (x - mean) / std

    if args.packed:
        d = np.load(args.packed)
        train_u8 = with_noise(rng, d["train_images"], d["train_base"], d["train_masks"])
        val_u8 = with_noise(rng, d["val_images"], d["val_base"], d["val_masks"])
        train_masks, val_masks = d["train_masks"], d["val_masks"]
    else:
        train_u8, train_masks = read_split(os.path.join(args.scenes, "train"))
        val_u8, val_masks = read_split(os.path.join(args.scenes, "val"))
    xtr, xva = to_input(train_u8), to_input(val_u8)
    ytr = torch.from_numpy(train_masks.astype(np.int64)).to(dev)
    yva = torch.from_numpy(val_masks.astype(np.int64)).to(dev)

    if args.model == "unet":
        net = models.UNet(NUM_CLASSES, 3, depth=4, base_width=args.width, batch_norm=True)
    else:
        net = models.ResNetUNet(NUM_CLASSES, depth=18, base_channels=args.width)
    net = net.to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    stop = args.stop or args.total

    def lr_at(step):
        if step < args.warmup:
            return args.lr * (step + 1) / args.warmup
        t = (step - args.warmup) / max(1, args.total - args.warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, t)))

    def loss_fn(logits, y):
        ce = F.cross_entropy(logits, y)
        p = logits.softmax(1)
        onehot = F.one_hot(y, NUM_CLASSES).permute(0, 3, 1, 2).float()
        inter = (p * onehot).sum((0, 2, 3))
        den = (onehot * onehot).sum((0, 2, 3)) + (p * p).sum((0, 2, 3))
        return ce + args.dice_weight * (1 - 2 * inter / (den + 1e-6)).mean()

    @torch.no_grad()
    def evaluate():
        net.eval()
        cm = torch.zeros(NUM_CLASSES * NUM_CLASSES, dtype=torch.long, device=dev)
        for i in range(0, xva.size(0), 50):
            p = net(xva[i:i + 50]).argmax(1)  # in float32, as ostrov's Trainer evaluates
            cm += torch.bincount(yva[i:i + 50].flatten() * NUM_CLASSES + p.flatten(),
                                 minlength=NUM_CLASSES * NUM_CLASSES)
        net.train()
        cm = cm.view(NUM_CLASSES, NUM_CLASSES).double()
        iou = cm.diag() / (cm.sum(0) + cm.sum(1) - cm.diag()).clamp_min(1)
        return iou, (cm.diag().sum() / cm.sum()).item()

    t0 = time.time()

    def report(step, final):
        iou, pixel = evaluate()
        rec = dict(step=step, miou=round(iou.mean().item(), 4), pixel_accuracy=round(pixel, 4),
                   seconds=round(time.time() - t0, 1), final=final, args=vars(args))
        if final:
            rec["iou_per_class"] = [round(v, 3) for v in iou.tolist()]
        recipe.emit(rec, args.log)

    step, batches = 0, recipe.epoch_batches(xtr.size(0), args.batch, dev)
    net.train()
    while step < stop and time.time() - t0 < args.wall:
        idx = next(batches)
        x, y = xtr[idx], ytr[idx]
        flip = torch.rand(x.size(0), device=dev) < 0.5
        x = torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)
        y = torch.where(flip.view(-1, 1, 1), y.flip(2), y)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with recipe.autocast(args, dev):
            loss = loss_fn(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        if args.eval_every and step % args.eval_every == 0 and step < stop:
            report(step, False)
    report(step, True)


def main():
    p, _, tr = recipe.parser(__doc__, width=16,
                             width_help="U-Net base width / ResNet base channels",
                             lr=2e-3, warmup=20, total=2000)
    tr.add_argument("--model", choices=("unet", "resnet"), default="unet")
    tr.add_argument("--dice-weight", type=float, default=0.5)
    args = p.parse_args()
    if args.command == "pack":
        pack(args)
    else:
        train(args)


if __name__ == "__main__":
    main()
