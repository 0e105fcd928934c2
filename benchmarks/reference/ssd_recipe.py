"""The detection training recipe of `ostrov train examples/configs/ssd_light_scenes.json`, in
PyTorch-Python, to ask how far the recipe itself goes with more steps than this 2-core machine
runs in 15 minutes (on a GPU, or on the CPU with patience).

What it mirrors (ostrov file in brackets):
  model     models.SSDLight: ResNet-18 at base width 32 (`--width`; 64 is torchvision's), its
            layer3 and layer4 maps and 3 extra stages, 256x256 input
            (models/src/detection/ssd.cpp, SSDOptions::light)
  priors    1524 default boxes: torchvision's DefaultBoxGenerator, aspect ratios [2], [2,3],
            [2,3], [2], [2], scales 0.1..0.9 (src/ops/priors.cpp)
  targets   the threshold matcher at IoU 0.5, every ground truth box also taking its best prior
            (models/src/detection/ssd_targets.cpp, src/ops/matchers.cpp); box coder weights
            10, 10, 5, 5 (src/ops/box_coder.cpp)
  loss      multibox: smooth-L1 + cross-entropy with 3 hard negatives per positive
            (losses/src/multibox.cpp)
  augment   PhotometricDistort, horizontal flip with p 0.5, then ImageNet's mean/std
            (src/data/transforms.cpp, tasks/src/detection.cpp)
  schedule  an epoch is a fresh permutation of the training scenes, the last partial batch
            dropped, batch 8; Adam, lr 1e-3, cosine to 0 over `--total` steps after a warm-up of
            50 steps from 0.001 x lr (src/train/optim.cpp)
  eval      post-processing: score > 0.01, 400 candidates per class, class-wise NMS at 0.45,
            200 kept (ssd.cpp ssd_postprocess); DetectionAP (metrics/src/detection_ap.cpp):
            `map50` is COCO's AP at IoU 0.5, `voc_map50` VOC's all-point AP at IoU 0.5 and `map`
            COCO's AP@[.5:.95], as `ostrov eval` reports them; `val_loss` is the multibox loss in batches of `--batch`

Not bit-exact: the random draws (initialisation, order, augmentation) come from other
generators, the HSV step of PhotometricDistort reimplements OpenCV's float RGB<->HSV formulas in
torch, and the kernels are PyTorch's (on a GPU in fp32, TF32 off), so float rounding differs.

    # the scenes of docs/results.md "Detection", read as written by `ostrov make-scenes` (det/train,
    # det/val): its 2500 steps, evaluated after every epoch
    /usr/bin/python3 benchmarks/reference/ssd_recipe.py train --scenes det --total 2500 \
        --eval-every 250 --device cpu
    # a compact copy to carry to another machine: the background's i.i.d. noise (base colour +
    # (byte * 71 >> 8) - 35 per pixel and channel, byte uniform in 0..255; src/data/scenes.cpp
    # kNoise) is replaced by the base colour and drawn again on loading
    /usr/bin/python3 benchmarks/reference/ssd_recipe.py pack --scenes det --output det.npz
    python3 benchmarks/reference/ssd_recipe.py train --packed det.npz --total 25000 \
        --eval-every 2500
    # self-checks against torchvision and hand-computed AP (CPU, seconds)
    /usr/bin/python3 benchmarks/reference/ssd_recipe.py check

Each evaluation appends one JSON line (step, map50, map, map75, voc_map50, voc07_map50,
val_loss, the mean training loss since the previous evaluation, seconds; AP@0.5 per class at the
end) to --log.
"""
import io
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402
import recipe  # noqa: E402

NUM_CLASSES = 11
IMAGE = 256
ASPECT_RATIOS = [[2], [2, 3], [2, 3], [2], [2]]
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
CODER_CLIP = math.log(1000.0 / 16)
VAL_NOISE_SEED = 12345  # the same validation noise for every run of a packed file

# ----------------------------------------------------------------------------- default boxes


def grid_sizes(size=IMAGE):
    """Sides of the 5 maps: conv1, the max-pool, layer2, layer3, layer4 and the 3 extra stages
    each halve the side as (s - 1) // 2 + 1, and the maps are layer3's onwards. 256 -> 16, 8, 4,
    2, 1."""
    sides = [size]
    for _ in range(8):
        sides.append((sides[-1] - 1) // 2 + 1)
    return sides[4:]


def make_priors(size=IMAGE, min_ratio=0.1, max_ratio=0.9):
    """DefaultBoxGenerator(ASPECT_RATIOS, min_ratio, max_ratio, clip) for a size x size input,
    in torchvision's operations and precisions: [P,4] x1, y1, x2, y2 in pixels, float32."""
    k_maps = len(ASPECT_RATIOS)
    scales = [min_ratio + (max_ratio - min_ratio) * k / (k_maps - 1.0) for k in range(k_maps)]
    scales.append(1.0)
    boxes = []
    for k, f in enumerate(grid_sizes(size)):
        s_k, s_prime = scales[k], math.sqrt(scales[k] * scales[k + 1])
        wh = [[s_k, s_k], [s_prime, s_prime]]
        for ratio in ASPECT_RATIOS[k]:
            r = math.sqrt(ratio)
            wh += [[s_k * r, s_k / r], [s_k / r, s_k * r]]
        wh = torch.tensor(wh, dtype=torch.float32).clamp(0, 1)
        shifts = ((torch.arange(0, f) + 0.5) / float(f)).to(torch.float32)
        sy, sx = torch.meshgrid(shifts, shifts, indexing="ij")
        centres = torch.stack((sx.reshape(-1), sy.reshape(-1)) * len(wh), dim=-1).reshape(-1, 2)
        boxes.append(torch.cat([centres, wh.repeat(f * f, 1)], 1))
    b = torch.cat(boxes, 0)
    xy_size = torch.tensor([size, size])
    return torch.cat([(b[:, :2] - 0.5 * b[:, 2:]) * xy_size, (b[:, :2] + 0.5 * b[:, 2:]) * xy_size],
                     -1)


# --------------------------------------------------------------------------- targets and loss


def encode(gt, priors):
    """BoxCoder(10, 10, 5, 5).encode, broadcasting: boxes [..., 4] -> codes [..., 4]."""
    pw, ph = priors[..., 2] - priors[..., 0], priors[..., 3] - priors[..., 1]
    px, py = priors[..., 0] + 0.5 * pw, priors[..., 1] + 0.5 * ph
    gw, gh = gt[..., 2] - gt[..., 0], gt[..., 3] - gt[..., 1]
    gx, gy = gt[..., 0] + 0.5 * gw, gt[..., 1] + 0.5 * gh
    wx, wy, ww, wh = CODER_WEIGHTS
    return torch.stack([wx * (gx - px) / pw, wy * (gy - py) / ph,
                        ww * torch.log(gw / pw), wh * torch.log(gh / ph)], -1)


def decode(codes, priors):
    """BoxCoder(10, 10, 5, 5).decode: codes [..., P, 4], priors [P, 4] -> boxes [..., P, 4]."""
    w, h = priors[:, 2] - priors[:, 0], priors[:, 3] - priors[:, 1]
    cx, cy = priors[:, 0] + 0.5 * w, priors[:, 1] + 0.5 * h
    wx, wy, ww, wh = CODER_WEIGHTS
    dx, dy = codes[..., 0] / wx, codes[..., 1] / wy
    dw, dh = (codes[..., 2] / ww).clamp(max=CODER_CLIP), (codes[..., 3] / wh).clamp(max=CODER_CLIP)
    pcx, pcy = dx * w + cx, dy * h + cy
    pw, ph = torch.exp(dw) * w, torch.exp(dh) * h
    return torch.stack([pcx - 0.5 * pw, pcy - 0.5 * ph, pcx + 0.5 * pw, pcy + 0.5 * ph], -1)


def box_iou_batched(a, b):
    """a [B,G,4], b [P,4] -> IoU [B,G,P] (torchvision's box_iou)."""
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    lt = torch.max(a[..., None, :2], b[:, :2])
    rb = torch.min(a[..., None, 2:], b[:, 2:])
    wh = (rb - lt).clamp(min=0)
    inter = wh[..., 0] * wh[..., 1]
    return inter / (area_a[..., None] + area_b - inter)


def ssd_targets(boxes, labels, valid, priors, iou_threshold=0.5):
    """ostrov's ssd_targets with the threshold matcher, on padded ground truth: boxes [B,G,4],
    labels [B,G], valid [B,G] -> (codes [B,P,4], labels [B,P], 0 = background). A prior takes its
    best valid box (the first on ties) if the IoU reaches the threshold; then every box takes its
    best prior (the later box winning a shared one). Batched, so no host sync per image."""
    B, G = labels.shape
    P = priors.size(0)
    iou = box_iou_batched(boxes, priors)
    quality = torch.where(valid[..., None], iou, torch.full_like(iou, -1.0))
    best_iou, best_box = quality.max(1)
    matches = torch.where(best_iou >= iou_threshold, best_box, torch.full_like(best_box, -1))
    best_prior = iou.argmax(2)
    is_best = (torch.arange(P, device=priors.device) == best_prior[..., None]) & valid[..., None]
    box_index = torch.arange(G, device=priors.device).view(1, G, 1)
    forced = torch.where(is_best, box_index, torch.full_like(box_index, -1)).max(1).values
    matches = torch.where(forced >= 0, forced, matches)
    positive = matches >= 0
    index = matches.clamp(min=0)
    target_labels = torch.where(positive, labels.gather(1, index), torch.zeros_like(index))
    codes = encode(boxes.gather(1, index[..., None].expand(B, P, 4)), priors.unsqueeze(0))
    return torch.where(positive[..., None], codes, torch.zeros_like(codes)), target_labels


def multibox_loss(locations, logits, target_codes, target_labels, neg_pos_ratio=3):
    """Smooth-L1 (beta 1) over the positives + cross-entropy over the positives and the
    neg_pos_ratio x positives hardest negatives of each image, both over the batch's positives."""
    positive = target_labels > 0
    negative = ~positive
    positives_per_image = positive.sum(1)
    num_positive = positives_per_image.sum().clamp(min=1).to(logits.dtype)
    diff = (locations - target_codes).abs()
    smooth_l1 = torch.where(diff < 1.0, 0.5 * diff * diff, diff - 0.5)
    loc_loss = (smooth_l1.sum(2) * positive.to(smooth_l1.dtype)).sum() / num_positive
    ce = -F.log_softmax(logits, 2).gather(2, target_labels.unsqueeze(2)).squeeze(2)
    with torch.no_grad():
        ranking = ce.masked_fill(positive, -math.inf)
        rank = ranking.sort(1, descending=True)[1].argsort(1)
        num_negative = torch.minimum(positives_per_image * neg_pos_ratio, negative.sum(1))
        selected = positive | ((rank < num_negative.unsqueeze(1)) & negative)
    cls_loss = (ce * selected.to(ce.dtype)).sum() / num_positive
    return loc_loss + cls_loss


# ------------------------------------------------------------------------------- augmentation

FLT_EPSILON = 1.1920928955078125e-07


def rgb_to_hsv(x):
    """OpenCV's COLOR_RGB2HSV on float x [B,3,H,W] in [0,1] -> H in [0,360), S, V in [0,1]."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    v = torch.max(torch.max(r, g), b)
    diff = v - torch.min(torch.min(r, g), b)
    s = diff / (v.abs() + FLT_EPSILON)
    d = 60.0 / (diff + FLT_EPSILON)
    h = torch.where(v == r, (g - b) * d,
                    torch.where(v == g, (b - r) * d + 120.0, (r - g) * d + 240.0))
    return torch.where(h < 0, h + 360.0, h), s, v


def hsv_to_rgb(h, s, v):
    """OpenCV's COLOR_HSV2RGB (float, H in degrees) -> [B,3,H,W]."""
    h6 = h * (6.0 / 360.0)
    h6 = torch.where(h6 < 0, h6 + 6.0, h6)
    h6 = torch.where(h6 >= 6.0, h6 - 6.0, h6)
    sector = torch.floor(h6).clamp(0, 5)
    f = h6 - sector
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))

    def by_sector(*values):
        out = values[5]
        for i in range(4, -1, -1):
            out = torch.where(sector == i, values[i], out)
        return out

    rgb = torch.stack([by_sector(v, q, p, p, t, v), by_sector(t, v, v, q, p, p),
                       by_sector(p, p, t, v, v, q)], 1)
    return torch.where((s == 0).unsqueeze(1), v.unsqueeze(1).expand_as(rgb), rgb)


def photometric_distort(x, p=0.5, brightness=32 / 255, contrast=(0.5, 1.5),
                        saturation=(0.5, 1.5), hue=18.0):
    """ostrov's PhotometricDistort with its own draws for every image of x [B,3,H,W] in [0,1]:
    brightness, contrast before or after the HSV step (saturation, hue), channel permutation."""
    B, dev = x.size(0), x.device

    def coin(prob):
        return (torch.rand(B, device=dev) < prob).view(B, 1, 1, 1)

    def uniform(lo, hi):
        return (lo + (hi - lo) * torch.rand(B, device=dev)).view(B, 1, 1, 1)

    x = torch.where(coin(p), (x + uniform(-brightness, brightness)).clamp(0, 1), x)
    contrast_first, do_contrast, alpha = coin(0.5), coin(p), uniform(*contrast)
    x = torch.where(contrast_first & do_contrast, (x * alpha).clamp(0, 1), x)
    do_saturation, factor = coin(p), uniform(*saturation)
    do_hue, shift = coin(p), uniform(-hue, hue)
    h, s, v = rgb_to_hsv(x)
    h = torch.where(do_hue[:, 0], h + shift[:, 0], h)
    h = torch.where(h < 0, h + 360.0, h)
    h = torch.where(h >= 360.0, h - 360.0, h)
    s = torch.where(do_saturation[:, 0], (s * factor[:, 0]).clamp(0, 1), s)
    x = torch.where(do_saturation | do_hue, hsv_to_rgb(h, s, v), x)
    x = torch.where(~contrast_first & do_contrast, (x * alpha).clamp(0, 1), x)
    permutation = torch.rand(B, 3, device=dev).argsort(1)  # one of the 6, uniformly
    permuted = x.gather(1, permutation.view(B, 3, 1, 1).expand_as(x))
    return torch.where(coin(p), permuted, x)


# ------------------------------------------------------------------------------------- data


def read_scenes(root):
    """(file names, images [N,256,256,3] uint8 RGB, boxes [k,4] x1,y1,x2,y2 and labels [k] per
    image) of an ostrov COCO scene folder, in the images array's order; labels 1..10 in
    category-id order (src/data/coco_dataset.cpp)."""
    from PIL import Image
    with open(os.path.join(root, "instances.json")) as f:
        coco = json.load(f)
    label_of = {c: i + 1 for i, c in enumerate(sorted(c["id"] for c in coco["categories"]))}
    annotations = {}
    for a in coco["annotations"]:
        if a.get("iscrowd", 0):
            raise SystemExit(f"{root}: crowd annotations are not handled (make-scenes writes none)")
        annotations.setdefault(a["image_id"], []).append(a)
    names, images, boxes, labels = [], [], [], []
    for entry in coco["images"]:
        path = os.path.join(root, "images", entry["file_name"])
        image = Image.open(path).convert("RGB")
        if image.size != (IMAGE, IMAGE):
            raise SystemExit(f"{path}: {image.size[0]}x{image.size[1]}, not {IMAGE}x{IMAGE}")
        anns = annotations.get(entry["id"], [])
        names.append(entry["file_name"])
        images.append(np.asarray(image))
        boxes.append(np.array([[x, y, x + w, y + h] for x, y, w, h in (a["bbox"] for a in anns)],
                              np.float32).reshape(-1, 4))
        labels.append(np.array([label_of[a["category_id"]] for a in anns], np.int64))
    if not names:
        raise SystemExit(f"{root}: no scenes")
    return names, np.stack(images), boxes, labels


def pack(args):
    """Per split: the images with their background set to the base colour, PNG-encoded and
    concatenated (png, off: byte offsets), the item pixels (fg: packbits of mask != 0), the base
    colour (base), and the boxes and labels of all images (boxes, labels; nbox per image)."""
    from PIL import Image
    out = {}
    for split in ("train", "val"):
        root = os.path.join(args.scenes, split)
        names, images, boxes, labels = read_scenes(root)
        pngs, offsets, foreground, bases = [], [0], [], []
        for name, image in zip(names, images):
            mask = np.asarray(Image.open(os.path.join(root, "masks",
                                                      os.path.splitext(name)[0] + ".png")))
            background = mask == 0
            values = image[background].astype(np.int16)
            # base + 35 <= 125 never saturates, so the maximum gives the base (a median would
            # not: the 71 noise values have 3 or 4 bytes each); the minimum confirms it
            base = values.max(0) - 35
            if not ((values.min(0) == np.maximum(base - 35, 0)).all()
                    and (base >= 0).all() and (base <= 90).all()):
                raise SystemExit(f"{root}/images/{name}: the background is not make-scenes' "
                                 "noise (base 0..90, +-35)")
            image = image.copy()
            image[background] = base
            buf = io.BytesIO()
            Image.fromarray(image).save(buf, format="PNG", optimize=True)
            pngs.append(np.frombuffer(buf.getvalue(), np.uint8))
            offsets.append(offsets[-1] + len(pngs[-1]))
            foreground.append(np.packbits(~background))
            bases.append(base.astype(np.uint8))
        out[split + "_png"] = np.concatenate(pngs)
        out[split + "_off"] = np.array(offsets, np.int64)
        out[split + "_fg"] = np.stack(foreground)
        out[split + "_base"] = np.stack(bases)
        out[split + "_boxes"] = np.concatenate(boxes)
        out[split + "_labels"] = np.concatenate(labels)
        out[split + "_nbox"] = np.array([len(b) for b in boxes], np.int64)
        print(f"{split}: {len(names)} scenes, {len(out[split + '_labels'])} boxes")
    np.savez_compressed(args.output, **out)
    print(f"{args.output}: {os.path.getsize(args.output) / 1e6:.1f} MB")


def read_packed(path, split, dev, noise_seed):
    """A split of a `pack` file: (images [N,3,256,256] uint8 on dev with the background noise
    drawn again, boxes and labels per image)."""
    from PIL import Image
    d = np.load(path)
    png, offsets = d[split + "_png"], d[split + "_off"]
    n = len(offsets) - 1
    clean = np.stack([np.asarray(Image.open(io.BytesIO(png[offsets[i]:offsets[i + 1]].tobytes()))
                                 .convert("RGB")) for i in range(n)])
    foreground = np.unpackbits(d[split + "_fg"], axis=1)[:, :IMAGE * IMAGE]
    foreground = torch.from_numpy(foreground.reshape(n, 1, IMAGE, IMAGE).astype(bool)).to(dev)
    base = torch.from_numpy(d[split + "_base"].astype(np.int16)).to(dev).view(n, 3, 1, 1)
    clean = torch.from_numpy(clean).to(dev).permute(0, 3, 1, 2).contiguous()
    generator = torch.Generator(device=dev)
    generator.manual_seed(noise_seed)
    images = torch.empty_like(clean)
    for i in range(0, n, 100):  # in chunks: int16 draws for 2000 scenes would take 0.8 GB
        c = slice(i, i + 100)
        byte = torch.randint(0, 256, clean[c].shape, device=dev, dtype=torch.int16,
                             generator=generator)
        noisy = (base[c] + ((byte * 71) >> 8) - 35).clamp(0, 255).to(torch.uint8)
        images[c] = torch.where(foreground[c], clean[c], noisy)
    ends = np.cumsum(d[split + "_nbox"])[:-1]
    return images, np.split(d[split + "_boxes"], ends), np.split(d[split + "_labels"], ends)


def load_split(args, split, dev, noise_seed):
    """dict(images [N,3,256,256] uint8, boxes [N,G,4], labels [N,G], valid [N,G] on dev; gt: the
    (boxes, labels) numpy pairs that DetectionAP compares with)."""
    if args.packed:
        images, boxes, labels = read_packed(args.packed, split, dev, noise_seed)
    else:
        _, images, boxes, labels = read_scenes(os.path.join(args.scenes, split))
        images = torch.from_numpy(images).to(dev).permute(0, 3, 1, 2).contiguous()
    n, g = len(boxes), max(1, max(len(b) for b in boxes))
    # padding is a unit box, not an empty one, so that its IoU is 0 and not 0/0
    padded_boxes = np.tile(np.array([0, 0, 1, 1], np.float32), (n, g, 1))
    padded_labels = np.zeros((n, g), np.int64)
    valid = np.zeros((n, g), bool)
    for i, (b, l) in enumerate(zip(boxes, labels)):
        padded_boxes[i, :len(b)], padded_labels[i, :len(b)], valid[i, :len(b)] = b, l, True
    return dict(images=images, boxes=torch.from_numpy(padded_boxes).to(dev),
                labels=torch.from_numpy(padded_labels).to(dev),
                valid=torch.from_numpy(valid).to(dev),
                gt=[(b.astype(np.float64), l) for b, l in zip(boxes, labels)])


# ----------------------------------------------------------------------- post-processing + AP


def postprocess(locations, logits, priors, score_threshold=0.01, topk=400, nms=0.45, keep=200):
    """ssd_postprocess, boxes in input pixels -> (boxes [K,4], scores [K], labels [K]) numpy per
    image, best first."""
    n, P, C = logits.shape
    boxes = decode(locations, priors).clamp(0, IMAGE)
    prob = F.softmax(logits, -1)[..., 1:].transpose(1, 2)  # [n, C-1, P]
    k = min(topk, P)
    scores, index = prob.topk(k, dim=2)
    candidates = boxes.gather(1, index.reshape(n, -1, 1).expand(n, (C - 1) * k, 4))
    candidates = candidates.view(n, C - 1, k, 4)
    classes = torch.arange(1, C, device=logits.device).view(C - 1, 1).expand(C - 1, k)
    out = []
    for i in range(n):
        m = scores[i] > score_threshold
        b, s, c = candidates[i][m], scores[i][m], classes[m]
        kept = torchvision.ops.batched_nms(b, s, c, nms)[:keep]
        out.append((b[kept].double().cpu().numpy(), s[kept].double().cpu().numpy(),
                    c[kept].cpu().numpy()))
    return out


def overlaps(det_boxes, gt_boxes):
    """IoU [D,G] in double, 0 where the boxes do not intersect."""
    if len(det_boxes) == 0 or len(gt_boxes) == 0:
        return np.zeros((len(det_boxes), len(gt_boxes)))
    lt = np.maximum(det_boxes[:, None, :2], gt_boxes[None, :, :2])
    rb = np.minimum(det_boxes[:, None, 2:], gt_boxes[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_d = (det_boxes[:, 2] - det_boxes[:, 0]) * (det_boxes[:, 3] - det_boxes[:, 1])
    area_g = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
    union = area_d[:, None] + area_g[None, :] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((inter > 0) & (union > 0), inter / union, 0.0)


COCO_IOUS = np.array([i * ((0.95 - 0.5) / 9.0) + 0.5 for i in range(9)] + [0.95])
COCO_RECALLS = np.array([i * 0.01 for i in range(100)] + [1.0])


def voc_ap(dets, gts, ious, c, num_gt):
    """(all-point AP, 11-point AP) at IoU > 0.5 of class c, detections pooled over the images."""
    stride = max(len(g[1]) for g in gts) + 1
    scores, best, key = [], [], []
    for i, (d, g) in enumerate(zip(dets, gts)):
        dm, gm = np.nonzero(d[2] == c)[0], np.nonzero(g[1] == c)[0]
        if len(dm) == 0:
            continue
        scores.append(d[1][dm])
        if len(gm):
            sub = ious[i][np.ix_(dm, gm)]
            j = sub.argmax(1)  # the first of equal overlaps
            best.append(sub[np.arange(len(dm)), j])
            key.append(i * stride + gm[j])
        else:
            best.append(np.full(len(dm), -np.inf))
            key.append(np.full(len(dm), -1))
    if scores:
        order = np.argsort(-np.concatenate(scores), kind="stable")
        best, key = np.concatenate(best)[order], np.concatenate(key)[order]
        hits = np.nonzero(best > 0.5)[0]
        tp = np.zeros(len(order))
        tp[hits[np.unique(key[hits], return_index=True)[1]]] = 1  # later hits are duplicates
        tp_sum, fp_sum = np.cumsum(tp), np.cumsum(1 - tp)
        recall = tp_sum / num_gt
        precision = tp_sum / np.maximum(tp_sum + fp_sum, np.finfo(np.float64).eps)
    else:
        recall = precision = np.zeros(0)
    ap11 = sum((precision[recall >= t].max() if (recall >= t).any() else 0.0) / 11.0
               for t in [i * 0.1 for i in range(11)])
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.maximum.accumulate(np.concatenate([[0.0], precision, [0.0]])[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]).sum()), float(ap11)


def coco_ap(dets, gts, ious, c, num_gt, max_detections=100):
    """AP of class c at each of COCO_IOUS: pycocotools' evaluateImg (greedy by score, each
    detection takes the best unmatched box, the later on ties) and accumulate."""
    all_scores, all_matched = [], []
    for i, (d, g) in enumerate(zip(dets, gts)):
        dm, gm = np.nonzero(d[2] == c)[0], np.nonzero(g[1] == c)[0]
        if len(dm) == 0:
            continue
        dm = dm[np.argsort(-d[1][dm], kind="stable")][:max_detections]
        matched = np.zeros((len(dm), len(COCO_IOUS)), bool)
        if len(gm):
            sub = ious[i][np.ix_(dm, gm)]
            used = np.zeros((len(gm), len(COCO_IOUS)), bool)
            for r in np.nonzero(sub.max(1) >= 0.5)[0]:
                for t, threshold in enumerate(COCO_IOUS):
                    best, m = min(threshold, 1 - 1e-10), -1
                    for j in range(len(gm)):
                        if not used[j, t] and sub[r, j] >= best:
                            best, m = sub[r, j], j
                    if m >= 0:
                        matched[r, t] = used[m, t] = True
        all_scores.append(d[1][dm])
        all_matched.append(matched)
    if not all_scores:
        return np.zeros(len(COCO_IOUS))
    order = np.argsort(-np.concatenate(all_scores), kind="stable")
    matched = np.concatenate(all_matched)[order]
    tp = np.cumsum(matched, 0).T.astype(np.float64)  # [thresholds, detections]
    fp = np.cumsum(~matched, 0).T.astype(np.float64)
    recall = tp / num_gt
    precision = np.maximum.accumulate((tp / (fp + tp + np.spacing(1.0)))[:, ::-1], 1)[:, ::-1]
    ap = []
    for t in range(len(COCO_IOUS)):
        index = np.searchsorted(recall[t], COCO_RECALLS, side="left")
        ap.append(precision[t][index[index < len(recall[t])]].sum() / len(COCO_RECALLS))
    return np.array(ap)


def detection_ap(dets, gts):
    """DetectionAP over the classes present in the ground truth. dets: per image (boxes, scores,
    labels); gts: per image (boxes, labels)."""
    ious = [overlaps(d[0], g[0]) for d, g in zip(dets, gts)]
    classes = sorted(set(int(c) for g in gts for c in g[1]))
    voc, voc11, coco = [], [], []
    for c in classes:
        num_gt = sum(int((g[1] == c).sum()) for g in gts)
        all_point, eleven_point = voc_ap(dets, gts, ious, c, num_gt)
        voc.append(all_point)
        voc11.append(eleven_point)
        coco.append(coco_ap(dets, gts, ious, c, num_gt))
    coco = np.array(coco).reshape(-1, len(COCO_IOUS))
    return dict(voc_map50=float(np.mean(voc)), voc07_map50=float(np.mean(voc11)),
                map=float(coco.mean(1).mean()), map50=float(coco[:, 0].mean()),
                map75=float(coco[:, 5].mean()),
                ap50_per_class={str(c): round(float(v), 4) for c, v in zip(classes, coco[:, 0])})


# ------------------------------------------------------------------------------------ train


def train(args):
    dev = torch.device(args.device)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(args.seed)
    mean = torch.tensor(MEAN, device=dev).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=dev).view(1, 3, 1, 1)

    def normalize(x):
        return (x - mean) / std

    train_set = load_split(args, "train", dev, noise_seed=1000 + args.seed)
    val_set = load_split(args, "val", dev, noise_seed=VAL_NOISE_SEED)
    priors = make_priors().to(dev)
    net = models.SSDLight(NUM_CLASSES, width=args.width).to(dev)
    # fused: one kernel for all parameters on the GPU (the same update)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr, fused=dev.type == "cuda")
    stop = args.stop or args.total

    def lr_at(step):
        lr = args.lr * 0.5 * (1.0 + math.cos(math.pi * min(step, args.total) / max(args.total, 1)))
        if step < args.warmup:
            a = step / args.warmup
            lr *= 0.001 * (1.0 - a) + a
        return lr

    @torch.no_grad()
    def evaluate():
        net.eval()
        dets, loss_sum = [], 0.0
        n = val_set["images"].size(0)
        for i in range(0, n, args.batch):
            part = slice(i, i + args.batch)
            locations, logits = net(normalize(val_set["images"][part].float() / 255.0))
            codes, labels = ssd_targets(val_set["boxes"][part], val_set["labels"][part],
                                        val_set["valid"][part], priors)
            loss = multibox_loss(locations, logits, codes, labels)
            loss_sum += loss.item() * logits.size(0)
            dets += postprocess(locations, logits, priors)
        net.train()
        r = detection_ap(dets, val_set["gt"])
        r["val_loss"] = loss_sum / n
        return r

    t0 = time.time()
    train_loss, train_steps = torch.zeros((), device=dev), 0  # since the last evaluation

    def report(step, final):
        nonlocal train_loss, train_steps
        r = evaluate()
        rec = dict(step=step, **{k: round(r[k], 4) for k in
                                 ("map50", "map", "map75", "voc_map50", "voc07_map50",
                                  "val_loss")},
                   train_loss=round(train_loss.item() / max(train_steps, 1), 4),
                   seconds=round(time.time() - t0, 1), final=final, args=vars(args))
        if final:
            rec["ap50_per_class"] = r["ap50_per_class"]
        train_loss, train_steps = torch.zeros((), device=dev), 0
        recipe.emit(rec, args.log)

    B = args.batch
    step, batches = 0, recipe.epoch_batches(train_set["images"].size(0), B, dev)
    net.train()
    while step < stop and time.time() - t0 < args.wall:
        idx = next(batches)
        x = photometric_distort(train_set["images"][idx].float() / 255.0)
        boxes = train_set["boxes"][idx]
        flip = torch.rand(B, device=dev) < 0.5
        x = torch.where(flip.view(B, 1, 1, 1), x.flip(3), x)
        flipped = torch.stack([IMAGE - boxes[..., 2], boxes[..., 1], IMAGE - boxes[..., 0],
                               boxes[..., 3]], -1)
        boxes = torch.where(flip.view(B, 1, 1), flipped, boxes)
        codes, labels = ssd_targets(boxes, train_set["labels"][idx], train_set["valid"][idx],
                                    priors)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        with recipe.autocast(args, dev):
            loss = multibox_loss(*net(normalize(x)), codes, labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        train_loss += loss.detach()
        train_steps += 1
        if args.eval_every and step % args.eval_every == 0 and step < stop:
            report(step, False)
    report(step, True)


# ------------------------------------------------------------------------------------ check


def random_scenes(rng, count):
    """Ground truth like the scenes': 3..8 boxes of 40..96 px inside 256x256, distinct labels
    within an image (so that a box can only be matched by detections made from it)."""
    gts = []
    for _ in range(count):
        k = int(rng.integers(3, 9))
        wh = rng.integers(40, 97, size=(k, 2))
        xy = rng.integers(0, IMAGE - wh + 1)
        gts.append((np.concatenate([xy, xy + wh], 1).astype(np.float64),
                    rng.choice(np.arange(1, NUM_CLASSES), k, replace=False)))
    return gts


def check(_args):
    import colorsys
    from torchvision.models.detection import _utils as det_utils
    from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
    from torchvision.models.detection.image_list import ImageList

    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    failed = []

    def expect(ok, what):
        print(("ok    " if ok else "FAIL  ") + what, flush=True)
        if not ok:
            failed.append(what)

    priors = make_priors()
    expect(priors.shape == (1524, 4), f"priors: {priors.size(0)} (1524)")
    generator = DefaultBoxGenerator(ASPECT_RATIOS, min_ratio=0.1, max_ratio=0.9)
    images = ImageList(torch.zeros(1, 3, IMAGE, IMAGE), [(IMAGE, IMAGE)])
    tv_priors = generator(images, [torch.zeros(1, 1, f, f) for f in grid_sizes()])[0]
    expect(torch.equal(tv_priors, priors), "priors equal torchvision's DefaultBoxGenerator bitwise")

    half = sum(p.numel() for p in models.SSDLight(NUM_CLASSES, width=32).parameters())
    expect(half == 3572744, f"parameters at width 32: {half} (ostrov's checkpoint: 3572744)")
    ours = models.SSDLight(NUM_CLASSES).backbone.state_dict()
    theirs = {k: v for k, v in torchvision.models.resnet18().state_dict().items()
              if not k.startswith("fc.")}
    expect(all(k in ours and ours[k].shape == v.shape for k, v in theirs.items()),
           "width 64: the backbone holds torchvision's resnet18 keys and shapes")

    gts = random_scenes(rng, 8)
    g = max(len(b) for b, _ in gts)
    boxes = torch.tensor([[0, 0, 1, 1]], dtype=torch.float32).repeat(len(gts), g, 1)
    labels = torch.zeros(len(gts), g, dtype=torch.int64)
    valid = torch.zeros(len(gts), g, dtype=torch.bool)
    for i, (b, l) in enumerate(gts):
        boxes[i, :len(b)], labels[i, :len(b)] = torch.tensor(b), torch.tensor(l)
        valid[i, :len(b)] = True
    codes, target_labels = ssd_targets(boxes, labels, valid, priors)
    same = True
    for i, (b, l) in enumerate(gts):
        gb, gl = torch.tensor(b, dtype=torch.float32), torch.tensor(l)
        m = det_utils.SSDMatcher(0.5)(torchvision.ops.box_iou(gb, priors))
        tv_labels = torch.where(m >= 0, gl[m.clamp(min=0)], torch.zeros_like(m))
        tv_codes = det_utils.BoxCoder(CODER_WEIGHTS).encode_single(gb[m.clamp(min=0)], priors)
        tv_codes = torch.where((m >= 0)[:, None], tv_codes, torch.zeros_like(tv_codes))
        same &= torch.equal(tv_labels, target_labels[i]) and torch.allclose(tv_codes, codes[i],
                                                                              atol=1e-5)
    expect(same, f"targets of {len(gts)} scenes ({int((target_labels > 0).sum())} positive priors) "
           "equal torchvision's SSDMatcher(0.5) + BoxCoder(10, 10, 5, 5)")

    gts = random_scenes(rng, 50)
    r = detection_ap([(b, np.ones(len(b)), l) for b, l in gts], gts)
    expect(r["voc_map50"] == 1.0 and r["map"] == 1.0,
           f"ground truth as detections: voc_map50 {r['voc_map50']:.6f}, map {r['map']:.6f} (1)")
    shifted = []
    for b, l in gts:  # by 40% of the width: IoU 0.6 / 1.4 < 0.5
        s = b.copy()
        s[:, [0, 2]] += 0.4 * (b[:, 2] - b[:, 0])[:, None]
        shifted.append((s, np.ones(len(s)), l))
    r = detection_ap(shifted, gts)
    expect(r["voc_map50"] == 0.0,
           f"ground truth shifted by 40% of the width: voc_map50 {r['voc_map50']:.4f} (0)")
    gt = [(np.array([[0, 0, 10, 10], [20, 20, 30, 30.]]), np.array([1, 1]))]
    fp_tp_tp = [(np.array([[50, 50, 60, 60], [0, 0, 10, 10], [20, 20, 30, 30.]]),
                 np.array([.9, .8, .7]), np.array([1, 1, 1]))]
    r = detection_ap(fp_tp_tp, gt)
    expect(abs(r["voc_map50"] - 2 / 3) < 1e-9 and abs(r["map"] - 2 / 3) < 1e-9,
           f"false, true, true positive: voc_map50 {r['voc_map50']:.4f}, map {r['map']:.4f} (2/3)")
    tp_dup_tp = [(np.array([[0, 0, 10, 10], [0, 0, 10, 10], [20, 20, 30, 30.]]),
                  np.array([.9, .8, .7]), np.array([1, 1, 1]))]
    r = detection_ap(tp_dup_tp, gt)  # recall .5, .5, 1 at precision 1, .5, 2/3
    expect(abs(r["voc_map50"] - (0.5 + 0.5 * 2 / 3)) < 1e-9,
           f"true positive, duplicate, true positive: voc_map50 {r['voc_map50']:.4f} (0.8333)")

    x = torch.rand(2, 3, 8, 8)
    h, s, v = rgb_to_hsv(x)
    error = (hsv_to_rgb(h, s, v) - x).abs().max().item()
    expect(error < 1e-5, f"RGB -> HSV -> RGB: max error {error:.1e}")
    hc, sc, vc = colorsys.rgb_to_hsv(*x[0, :, 0, 0].tolist())
    expect(abs(hc * 360 - h[0, 0, 0].item()) < 1e-3 and abs(sc - s[0, 0, 0].item()) < 1e-5
           and abs(vc - v[0, 0, 0].item()) < 1e-6, "HSV equals colorsys'")
    y = photometric_distort(torch.rand(16, 3, 32, 32))
    expect(y.shape == (16, 3, 32, 32) and y.min() >= 0 and y.max() <= 1,
           "photometric_distort keeps shape and [0, 1]")

    print(f"{len(failed)} of the checks failed" if failed else "all checks passed")
    if failed:
        sys.exit(1)


def main():
    p, sub, _ = recipe.parser(__doc__, width=32, width_help="backbone_channels (64: torchvision's)",
                              lr=1e-3, warmup=50, total=2500)
    sub.add_parser("check", help="compare priors, targets, AP and HSV with torchvision and "
                                 "hand-computed values (CPU, seconds)")
    args = p.parse_args()
    {"pack": pack, "train": train, "check": check}[args.command](args)


if __name__ == "__main__":
    main()
