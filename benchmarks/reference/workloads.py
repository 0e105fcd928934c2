"""The ostrov benchmark workloads written in PyTorch-Python (torch 1.13 / torchvision 0.14 from
Debian, the same LibTorch as ostrov) and scipy: the reference side of `make bench`.

Each function `name()` prepares its inputs and returns a zero-argument callable doing one
iteration of workload `name`, with the same sizes and (through the seeded generator) the same
input values as benchmarks/*.cpp. `seeded_rand(sizes, seed)` equals ostrov::bench::seeded_rand.
"""
import json
import os

import torch
import torch.nn.functional as F
import torchvision
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator

from . import models as ref_models

SOURCE_DIR = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLASSES = 11

SEGMENTATION = {  # name: (batch, square size), as kSegmentation in benchmarks/models.cpp
    "unet": (8, 128),
    "fcn8s": (4, 224),
    "fc_densenet56": (4, 128),
    "pspnet_r18": (4, 128),
    "unet_resnet18": (8, 128),
}


def seeded_rand(sizes, seed):
    return torch.rand(sizes, generator=torch.Generator().manual_seed(seed))


def pattern_image(height, width):
    c = torch.arange(3).view(3, 1, 1)
    y = torch.arange(height).view(1, height, 1)
    x = torch.arange(width).view(1, 1, width)
    return (7 * c + 3 * y + 5 * x).remainder(256).float() / 255.0


def compiled_if(model, compiled):
    """torch.compile(model) when `compiled` (Inductor's CPU backend, default mode): the peer a
    current PyTorch user would pick. It compiles on the first calls, which python_times' warm-up
    makes, so compile time is not in the timings."""
    return torch.compile(model) if compiled else model


def _segmentation_train(name, compiled=False):
    batch, size = SEGMENTATION[name]
    model = ref_models.build(name)
    model.train()
    net = compiled_if(model, compiled)
    sgd = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = seeded_rand((batch, 3, size, size), 0)
    target = (seeded_rand((batch, size, size), 1) * CLASSES).long().clamp_max_(CLASSES - 1)

    def step():
        sgd.zero_grad()
        out = net(x)
        if isinstance(out, tuple):  # PSPNet in training mode: (main, aux)
            loss = F.cross_entropy(out[0], target, ignore_index=255) + \
                model.aux_weight * F.cross_entropy(out[1], target, ignore_index=255)
        else:
            loss = F.cross_entropy(out, target, ignore_index=255)
        loss.backward()
        sgd.step()
    return step


def _segmentation_infer(name, compiled=False):
    batch, size = SEGMENTATION[name]
    model = ref_models.build(name)
    model.eval()
    model = compiled_if(model, compiled)
    x = seeded_rand((batch, 3, size, size), 0)

    def step():
        with torch.inference_mode():
            model(x)
    return step


def _mobile_segmentation_infer(builder, compiled=False):
    model = builder(weights=None, weights_backbone=None, num_classes=CLASSES)  # no aux head
    model.eval()
    model = compiled_if(model, compiled)
    x = seeded_rand((1, 3, 512, 512), 0)

    def step():
        with torch.inference_mode():
            model(x)
    return step


def deeplabv3_mnv3_infer(compiled=False):
    return _mobile_segmentation_infer(torchvision.models.segmentation.deeplabv3_mobilenet_v3_large,
                                      compiled)


def lraspp_mnv3_infer(compiled=False):
    return _mobile_segmentation_infer(torchvision.models.segmentation.lraspp_mobilenet_v3_large,
                                      compiled)


def _multibox_loss(locations, logits, target_locations, labels, neg_pos_ratio=3):
    """torchvision 0.14's SSD.compute_loss given the matched targets."""
    foreground = labels > 0
    num_foreground = foreground.sum()
    bbox_loss = F.smooth_l1_loss(locations[foreground], target_locations[foreground], reduction="sum")
    num_classes = logits.size(-1)
    cls_loss = F.cross_entropy(logits.view(-1, num_classes), labels.view(-1), reduction="none").view(labels.size())
    num_negative = neg_pos_ratio * foreground.sum(1, keepdim=True)
    negative_loss = cls_loss.clone()
    negative_loss[foreground] = -float("inf")
    values, idx = negative_loss.sort(1, descending=True)
    background_idxs = idx.sort(1)[1] < num_negative
    n = max(1, num_foreground.item())
    return bbox_loss / n + (cls_loss[foreground].sum() + cls_loss[background_idxs].sum()) / n


def ssd_light_train(compiled=False):
    model = ref_models.build("ssd_light")
    model.train()
    net = compiled_if(model, compiled)
    sgd = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = seeded_rand((8, 3, 256, 256), 0)
    locations, _ = model(x)
    priors = locations.size(1)
    u = seeded_rand((8, priors), 2)
    labels = torch.where(u < 0.03, (u * 1000).long().remainder(CLASSES - 1) + 1, torch.zeros((), dtype=torch.long))
    target_locations = seeded_rand((8, priors, 4), 3) - 0.5

    def step():
        sgd.zero_grad()
        loc, logits = net(x)
        _multibox_loss(loc, logits, target_locations, labels).backward()
        sgd.step()
    return step


def ssd_light_infer(compiled=False):
    model = ref_models.build("ssd_light")
    model.eval()
    model = compiled_if(model, compiled)
    x = seeded_rand((8, 3, 256, 256), 0)

    def step():
        with torch.inference_mode():
            model(x)
    return step


DETECTORS = {
    "ssd300": lambda: torchvision.models.detection.ssd300_vgg16(weights=None, weights_backbone=None),
    "ssdlite320": lambda: torchvision.models.detection.ssdlite320_mobilenet_v3_large(
        weights=None, weights_backbone=None),
}


def detector_weights_path(name):
    """torchvision's detector `name` ("ssd300", "ssdlite320") initialised from
    torch.manual_seed(0), saved once (both sides load it so that post-processing sees the same
    scores)."""
    path = os.path.join(SOURCE_DIR, "benchmarks", "results", name + "_seed0.pth")
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        torch.manual_seed(0)
        model = DETECTORS[name]()
        tmp = path + ".tmp"
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)
    return path


def _detector_infer(name):
    model = DETECTORS[name]()
    model.load_state_dict(torch.load(detector_weights_path(name)))
    model.eval()
    image = pattern_image(480, 640)

    def step():
        with torch.inference_mode():
            return model([image])
    return step


def ssd300_infer():
    return _detector_infer("ssd300")


def ssdlite320_infer():
    return _detector_infer("ssdlite320")


def gatys_vgg19_256():
    vgg = torchvision.models.vgg19(weights=None).features.eval()
    for p in vgg.parameters():
        p.requires_grad_(False)
    # torchvision vgg19.features indices of conv1_1, conv2_1, conv3_1, conv4_1, conv5_1; conv4_2
    style_idx = [0, 5, 10, 19, 28]
    content_idx = 21
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)

    def features(x):
        out = {}
        x = (x - mean) / std
        for i, layer in enumerate(vgg):
            x = layer(x)
            if i in style_idx or i == content_idx:
                out[i] = x
            if i == max(style_idx):
                break
        return out

    def gram(f):
        n, c, h, w = f.shape
        f = f.reshape(n, c, h * w)
        return f.bmm(f.transpose(1, 2)) / (c * h * w)

    content = pattern_image(256, 256).unsqueeze(0)
    style = seeded_rand((1, 3, 256, 256), 5)
    with torch.no_grad():
        s = features(style)
        style_targets = [gram(s[i]) for i in style_idx]
        content_target = features(content)[content_idx]
    image = content.clone().requires_grad_(True)

    def step():
        if image.grad is not None:
            image.grad.zero_()
        f = features(image)
        style_loss = sum(((gram(f[i]) - t) ** 2).sum() for i, t in zip(style_idx, style_targets))
        content_loss = ((f[content_idx] - content_target) ** 2).sum()
        (1e6 * style_loss + content_loss).backward()
    return step


def gemm_2048():
    a = seeded_rand((2048, 2048), 0)
    b = seeded_rand((2048, 2048), 1)
    c = torch.mm(a, b)
    return lambda: torch.mm(a, b, out=c)


def conv1x1_peak():
    x = seeded_rand((1, 1024, 64, 64), 0)
    w = seeded_rand((1024, 1024, 1, 1), 1) - 0.5

    def step():
        with torch.inference_mode():
            torch.conv2d(x, w)
    return step


def _random_boxes(n, extent, min_side, side_range, seed):
    u = seeded_rand((n, 4), seed)
    xy = u[:, :2] * extent
    wh = u[:, 2:] * side_range + min_side
    return torch.cat([xy, xy + wh], 1)


def nms_10k():
    boxes = _random_boxes(10000, 1000.0, 10.0, 100.0, 10)
    scores = seeded_rand((10000,), 11)
    return lambda: torchvision.ops.nms(boxes, scores, 0.5)


def box_iou_1000x8732():
    a = _random_boxes(1000, 300.0, 4.0, 120.0, 12)
    b = _random_boxes(8732, 300.0, 4.0, 120.0, 13)
    return lambda: torchvision.ops.box_iou(a, b)


def roi_align_fwd_bwd():
    inp = seeded_rand((2, 256, 50, 68), 14).requires_grad_(True)
    u = seeded_rand((512, 4), 15)
    x1, y1 = u[:, 0] * 400, u[:, 1] * 300
    x2, y2 = x1 + u[:, 2] * 200 + 1, y1 + u[:, 3] * 150 + 1
    batch = torch.arange(512, dtype=torch.float).remainder(2)
    rois = torch.stack([batch, x1, y1, x2, y2], 1)

    def step():
        inp.grad = None
        torchvision.ops.roi_align(inp, rois, (7, 7), 1.0 / 8, 2, True).sum().backward()
    return step


def lsa_50x8732():
    from scipy.optimize import linear_sum_assignment
    cost = seeded_rand((50, 8732), 16).double()

    def step():
        rows, cols = linear_sum_assignment(cost.numpy())
        return cost[torch.from_numpy(rows), torch.from_numpy(cols)].sum().item()
    return step


def ssd_targets_b32():
    """torchvision's SSD.compute_loss target path: SSDMatcher(0.5) + BoxCoder(10,10,5,5)."""
    generator = DefaultBoxGenerator([[2], [2, 3], [2, 3], [2, 3], [2], [2]],
                                    scales=[0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05],
                                    steps=[8, 16, 32, 64, 100, 300])
    sizes = [(38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)]
    image_list = torchvision.models.detection.image_list.ImageList(torch.zeros(1, 3, 300, 300), [(300, 300)])
    priors = generator(image_list, [torch.zeros(1, 1, h, w) for h, w in sizes])[0]
    matcher = det_utils.SSDMatcher(0.5)
    coder = det_utils.BoxCoder(weights=(10.0, 10.0, 5.0, 5.0))
    boxes, labels = [], []
    for i in range(32):
        g = 1 + i % 8
        boxes.append(_random_boxes(g, 200.0, 20.0, 80.0, 100 + i))
        labels.append(torch.arange(g).remainder(20) + 1)

    def step():
        out_locations, out_labels = [], []
        for b, l in zip(boxes, labels):
            matched = matcher(torchvision.ops.box_iou(b, priors))
            fg = matched >= 0
            target = torch.zeros(priors.size(0), dtype=torch.long)
            target[fg] = l[matched[fg]]
            out_labels.append(target)
            out_locations.append(coder.encode_single(b[matched.clamp(min=0)], priors))
        return torch.stack(out_locations), torch.stack(out_labels)
    return step


def confusion_matrix_100x512():
    prediction = (seeded_rand((100, 512, 512), 20) * 21).long().clamp_max_(20)
    u = seeded_rand((100, 512, 512), 21)
    target = torch.where(u < 0.05, torch.full((), 255, dtype=torch.long), (u * 21).long().clamp_max_(20))

    def step():
        cm = torch.zeros(21 * 21, dtype=torch.long)
        for i in range(100):
            t, p = target[i], prediction[i]
            keep = t != 255
            cm += torch.bincount(21 * t[keep] + p[keep], minlength=21 * 21)
        cm = cm.view(21, 21).double()
        tp = cm.diag()
        iou = tp / (cm.sum(0) + cm.sum(1) - tp)
        return iou.nanmean().item()
    return step


def unet_weight_map_8x128():
    """U-Net's weight map with scipy's exact Euclidean distance transform: w_c (inverse
    frequency of background and objects) + 10 exp(-(d1 + d2)^2 / 50) on the background."""
    import numpy as np
    from scipy.ndimage import distance_transform_edt
    labels = np.zeros((8, 128, 128), np.int64)
    for i in range(8):
        for k in range(10):
            y, x = (k // 4) * 40 + (i % 3) * 2, (k % 4) * 32 + i % 5
            labels[i, y:y + 30, x:x + 28] = k + 1

    def step():
        out = np.empty(labels.shape, np.float32)
        for i, lab in enumerate(labels):
            fg = lab != 0
            n, nf = lab.size, int(fg.sum())
            w = np.where(fg, n / (2.0 * nf), n / (2.0 * (n - nf)))
            d = np.stack([distance_transform_edt(lab != k) for k in np.unique(lab[fg])])
            d.sort(axis=0)
            s = d[0] + d[1]
            out[i] = w + np.where(fg, 0.0, 10.0 * np.exp(-s * s / 50.0))
        return float(out.sum())
    return step


def _register():
    table = {}
    for name in SEGMENTATION:
        table[name + "_train"] = (lambda compiled=False, n=name: _segmentation_train(n, compiled))
        table[name + "_infer"] = (lambda compiled=False, n=name: _segmentation_infer(n, compiled))
    for fn in (deeplabv3_mnv3_infer, lraspp_mnv3_infer, ssd_light_train, ssd_light_infer, ssd300_infer, ssdlite320_infer,
               gatys_vgg19_256, gemm_2048, conv1x1_peak, nms_10k,
               box_iou_1000x8732, roi_align_fwd_bwd, lsa_50x8732, ssd_targets_b32,
               confusion_matrix_100x512, unet_weight_map_8x128):
        table[fn.__name__] = fn
    return table


WORKLOADS = _register()
# The workloads whose builder takes compiled=True (run.py --compile): the models.
COMPILABLE = {name for name in WORKLOADS
              if name.endswith("_train") or name.endswith("_infer")} - {"ssd300_infer", "ssdlite320_infer"}
