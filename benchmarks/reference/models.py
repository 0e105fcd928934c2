"""Plain PyTorch (1.13 / torchvision 0.14) twins of five ostrov C++ models, for benchmarks that
compare an ostrov train/inference step with PyTorch-Python doing the identical work.

Each module here has the same layers, parameter shapes, initialisation, forward computation
(input padding, up-sampling, skip fusion, cropping) and state_dict key names as the ostrov
module it mirrors, so a state dict written by ostrov (ostrov::io::save_state_dict of
ostrov::io::module_state_dict) loads with `load_state_dict(torch.load(path))` and gives the
same outputs (checked against the C++ build; see the report in the benchmark's notes).

    name             ostrov C++ it mirrors
    "unet"           models::build(examples/configs/unet_scenes.json["model"], 11, ...)
                     = UNet(depth 4, base_width 16, batch_norm, transposed, padding same)
    "fcn8s"          models::build(fcn8s_scenes.json["model"], 11, ...) = FCN-8s over AlexNet,
                     fc_channels 512, dropout 0.5
    "fc_densenet56"  models::build(fc_densenet56_scenes.json["model"], 11, ...), dropout 0.2
    "pspnet_r18"     models::build(pspnet_r18_scenes.json["model"], 11, ...): dilated ResNet-18,
                     bins 1,2,3,6 (avg), dropout 0.1, aux head (aux_weight 0.4)
    "ssd_light"      models::SSD(models::SSDOptions::light(11)): ResNet-18 at layer3/layer4 + 3
                     extra stages, 256x256 input, 1524 default boxes
    "unet_resnet18"  models::build(unet_resnet18_scenes.json["model"], 11, ...) = ResNetUNet over
                     a half-width ResNet-18 (base_channels 32), decoder 128, 64, 32, 16, 8

Forward:
  segmentation models: x [N,3,H,W] float, any H, W >= 1 -> logits [N,11,H,W] (no softmax).
    PSPNet: in training mode forward returns the tuple (main, aux), both [N,11,H,W], as ostrov's
    forward_with_aux; the training loss is CE(main) + PSPNet.aux_weight * CE(aux) (ostrov's
    tasks/src/segmentation.cpp). In eval mode it returns main only (ostrov's forward).
    `forward_with_aux(x)` always returns (main, aux).
  ssd_light: x [N,3,256,256] (already normalised) -> (locations [N,P,4], scores [N,P,11]),
    ostrov's SSDOutput.locations / .scores (P = 1524 at 256x256; priors are not computed).

Run with Debian's /usr/bin/python3 (torch 1.13, torchvision 0.14).
"""

from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

NUM_CLASSES = 11
MODEL_NAMES = ("unet", "fcn8s", "fc_densenet56", "pspnet_r18", "ssd_light", "unet_resnet18")

# --------------------------------------------------------------------------------------------
# Input padding (ostrov models/src/segmentation/padding.cpp)


def _pad_dim(x, dim, before, after, mode):
    """Pads dimension dim (2 or 3) as ostrov's pad_dim: zeros, or reflect (repeated while a
    margin exceeds side - 1; a 1-pixel side is replicated)."""
    if before == 0 and after == 0:
        return x

    def spec(b, a):
        return (b, a, 0, 0) if dim == 3 else (0, 0, b, a)

    if mode == "zero":
        return F.pad(x, spec(before, after), mode="constant", value=0.0)
    if x.size(dim) == 1:
        return F.pad(x, spec(before, after), mode="replicate")
    while before > 0 or after > 0:
        limit = x.size(dim) - 1
        b = min(before, limit)
        a = min(after, limit)
        x = F.pad(x, spec(b, a), mode="reflect")
        before -= b
        after -= a
    return x


def pad_input(x, top, bottom, left, right, mode="reflect"):
    """-> (padded [N,C,top+H+bottom,left+W+right], (top, left, H, W))."""
    window = (top, left, x.size(2), x.size(3))
    y = _pad_dim(_pad_dim(x, 2, top, bottom, mode), 3, left, right, mode)
    return y, window


def pad_to_multiple(x, multiple, mode="reflect", remainder=0, min_size=1):
    """Pads to the smallest S >= max(side, min_size) with S % multiple == remainder, centred
    (odd pixel bottom/right), as ostrov's pad_to_multiple."""

    def target(side):
        s = max(side, min_size)
        r = ((remainder % multiple) + multiple) % multiple
        s += ((r - s % multiple) % multiple + multiple) % multiple
        return s

    dh = target(x.size(2)) - x.size(2)
    dw = target(x.size(3)) - x.size(3)
    return pad_input(x, dh // 2, dh - dh // 2, dw // 2, dw - dw // 2, mode)


def crop_to_input(y, window):
    top, left, h, w = window
    return y[:, :, top:top + h, left:left + w]


# --------------------------------------------------------------------------------------------
# Skip fusion (ostrov src/nn/fusion.cpp)


def crop_or_pad(x, h, w):
    """Centre-crops (offset (H-h)//2) or zero-pads (centred) each spatial dimension to h x w."""
    height, width = x.size(-2), x.size(-1)
    ch, cw = min(h, height), min(w, width)
    if ch != height or cw != width:
        t, l = (height - ch) // 2, (width - cw) // 2
        x = x[..., t:t + ch, l:l + cw]
    if ch != h or cw != w:
        top, left = (h - ch) // 2, (w - cw) // 2
        x = F.pad(x, (left, w - cw - left, top, h - ch - top), mode="constant", value=0.0)
    return x


def fuse_sum(a, b):
    return a + crop_or_pad(b, a.size(2), a.size(3))


def fuse_concat(a, b):
    return torch.cat([a, crop_or_pad(b, a.size(2), a.size(3))], 1)


# --------------------------------------------------------------------------------------------
# Blocks (ostrov include/ostrov/nn)


class ConvBnAct(nn.Module):
    """ostrov::nn::ConvBnAct with odd kernel, "same" zero padding, ReLU: children conv, bn."""

    def __init__(self, in_channels, out_channels, kernel_size, batch_norm=True):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size,
                              padding=(kernel_size - 1) // 2, bias=not batch_norm)
        self.bn = nn.BatchNorm2d(out_channels) if batch_norm else None

    def forward(self, x):
        y = self.conv(x)
        if self.bn is not None:
            y = self.bn(y)
        return torch.relu(y)


def bilinear_kernel(in_channels, out_channels, k):
    """ostrov::nn::bilinear_kernel: [in, out, k, k], the bilinear filter on the diagonal."""
    factor = (k + 1) // 2
    center = float(factor - 1) if k % 2 == 1 else factor - 0.5
    og = 1.0 - (torch.arange(k, dtype=torch.float32) - center).abs() / factor
    filt = og.unsqueeze(1) * og.unsqueeze(0)
    w = torch.zeros(in_channels, out_channels, k, k)
    for c in range(min(in_channels, out_channels)):
        w[c, c] = filt
    return w


class TransposedUpsample(nn.Module):
    """ostrov::nn::TransposedUpsample: child deconv (ConvTranspose2d stride f), output exactly
    H*f x W*f."""

    def __init__(self, in_channels, out_channels, factor, kernel_size=None, bilinear_init=False):
        super().__init__()
        f = factor
        k = kernel_size if kernel_size is not None else 2 * f - f % 2
        if k >= f:
            padding = (k - f + 1) // 2
            output_padding = 2 * padding - (k - f)
        else:
            padding, output_padding = 0, f - k
        self.deconv = nn.ConvTranspose2d(in_channels, out_channels, k, stride=f,
                                         padding=padding, output_padding=output_padding)
        if bilinear_init:
            with torch.no_grad():
                self.deconv.weight.copy_(bilinear_kernel(in_channels, out_channels, k))
                self.deconv.bias.zero_()

    def forward(self, x):
        return self.deconv(x)


# --------------------------------------------------------------------------------------------
# U-Net (models/src/segmentation/unet.cpp), padding "same", transposed up-sampling


class UNet(nn.Module):
    def __init__(self, num_classes=NUM_CLASSES, in_channels=3, depth=4, base_width=16,
                 batch_norm=True, input_padding="reflect"):
        super().__init__()
        self.depth = depth
        self.input_padding = input_padding

        def width(l):
            return base_width << l

        def double_conv(cin, cout):
            return nn.Sequential(ConvBnAct(cin, cout, 3, batch_norm),
                                 ConvBnAct(cout, cout, 3, batch_norm))

        # Registration order as ostrov's (encoder, up, decoder, bottleneck, head), so
        # parameters() comes in the same order.
        self.encoder = nn.ModuleList(
            [double_conv(in_channels if l == 0 else width(l - 1), width(l)) for l in range(depth)])
        self.up = nn.ModuleList(
            [TransposedUpsample(width(l + 1), width(l), 2, kernel_size=2) for l in range(depth)])
        self.decoder = nn.ModuleList([double_conv(2 * width(l), width(l)) for l in range(depth)])
        self.bottleneck = double_conv(width(depth - 1), width(depth))
        self.head = nn.Conv2d(width(0), num_classes, 1)
        # He initialisation of every Conv2d (not the transposed ones), zero biases.
        with torch.no_grad():
            for m in self.modules():
                if type(m) is nn.Conv2d:
                    nn.init.kaiming_normal_(m.weight, 0.0, "fan_in", "relu")
                    if m.bias is not None:
                        nn.init.zeros_(m.bias)

    def forward(self, x):
        y, window = pad_to_multiple(x, 1 << self.depth, self.input_padding, 0, 1)
        skips = []
        for l in range(self.depth):
            y = self.encoder[l](y)
            skips.append(y)
            y = F.max_pool2d(y, 2, 2)
        y = self.bottleneck(y)
        for l in range(self.depth - 1, -1, -1):
            y = self.up[l](y)
            y = fuse_concat(y, skips[l])
            y = self.decoder[l](y)
        y = self.head(y)
        return crop_to_input(y, window)


# --------------------------------------------------------------------------------------------
# U-Net over a ResNet encoder (models/src/segmentation/resnet_unet.cpp)


class ResNetEncoder(nn.Module):
    """torchvision's ResNet-18/34 layout and names (conv1, bn1, layer1..layer4, no fc) with
    `base_channels` instead of 64 (ostrov's ResNetOptions::base_channels); torchvision init."""

    def __init__(self, depth=18, base_channels=64):
        super().__init__()
        blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}[depth]
        b = base_channels
        self.conv1 = nn.Conv2d(3, b, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(b)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = b
        for i, (count, stride) in enumerate(zip(blocks, (1, 2, 2, 2))):
            planes = b << i
            layer = []
            for k in range(count):
                s = stride if k == 0 else 1
                down = None
                if k == 0 and (s != 1 or inplanes != planes):
                    down = nn.Sequential(nn.Conv2d(inplanes, planes, 1, s, bias=False),
                                         nn.BatchNorm2d(planes))
                layer.append(torchvision.models.resnet.BasicBlock(inplanes, planes, s, down))
                inplanes = planes
            setattr(self, "layer%d" % (i + 1), nn.Sequential(*layer))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")


class ResNetUNet(nn.Module):
    def __init__(self, num_classes=NUM_CLASSES, depth=18, base_channels=32):
        super().__init__()
        b = base_channels
        self.encoder = ResNetEncoder(depth, b)
        channels = (4 * b, 2 * b, b, max(1, b // 2), max(1, b // 4))
        skips = (4 * b, 2 * b, b, b, 0)
        blocks, cin = [], 8 * b
        for skip, cout in zip(skips, channels):
            blocks.append(nn.Sequential(ConvBnAct(cin + skip, cout, 3), ConvBnAct(cout, cout, 3)))
            cin = cout
        self.decoder = nn.ModuleList(blocks)
        self.head = nn.Conv2d(cin, num_classes, 1)
        for m in self.decoder.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        y, window = pad_to_multiple(x, 32)
        e = self.encoder
        stem = e.relu(e.bn1(e.conv1(y)))
        l1 = e.layer1(e.maxpool(stem))
        l2 = e.layer2(l1)
        l3 = e.layer3(l2)
        y = e.layer4(l3)
        for block, skip in zip(self.decoder, (l3, l2, l1, stem, None)):
            y = F.interpolate(y, scale_factor=2, mode="nearest")
            if skip is not None:
                y = torch.cat([y, skip], 1)
            y = block(y)
        return crop_to_input(self.head(y), window)


# --------------------------------------------------------------------------------------------
# FCN-8s over AlexNet (models/src/segmentation/fcn.cpp)

# AlexNet features + fc6 as (name, kernel, stride, padding) for the receptive-field arithmetic
# of ostrov::nn::receptive_fields.
_FCN_LAYERS = [("conv1", 11, 4, 2), ("pool1", 3, 2, 0), ("conv2", 5, 1, 2), ("pool2", 3, 2, 0),
               ("conv3", 3, 1, 1), ("conv4", 3, 1, 1), ("conv5", 3, 1, 1), ("pool5", 3, 2, 0),
               ("fc6", 6, 1, 0)]
# stage -> (index in features, channels)
_ALEXNET_STAGES = {"relu1": (1, 64), "pool1": (2, 64), "relu2": (4, 192), "pool2": (5, 192),
                   "relu3": (7, 384), "relu4": (9, 256), "relu5": (11, 256), "pool5": (12, 256)}


def _fields():
    """name -> (jump, start): unit i of the layer is centred on input pixel start + i*jump."""
    out, jump, start = {}, 1, 0.0
    for name, k, s, p in _FCN_LAYERS:
        start += ((k - 1) / 2.0 - p) * jump
        jump *= s
        out[name] = (jump, start)
    return out


def _score_units(side):
    for _, k, s, p in _FCN_LAYERS:
        if side + 2 * p < k:
            return 0
        side = (side + 2 * p - k) // s + 1
    return side


class FCN8s(nn.Module):
    def __init__(self, num_classes=NUM_CLASSES, fc_channels=512, dropout=0.5,
                 skip16_stage="pool2", skip8_stage="pool1", input_padding="reflect"):
        super().__init__()
        self.input_padding = input_padding
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
        fields = _fields()

        def tap(stage):
            index, channels = _ALEXNET_STAGES[stage]
            layer = "conv" + stage[4:] if stage.startswith("relu") else stage
            jump, start = fields[layer]
            return index, int(start), jump, channels

        self.score_start = int(fields["fc6"][1])  # 111
        self.margin = self.score_start
        self.skip16 = tap(skip16_stage)  # pool2: index 5, start 15, jump 16
        self.skip8 = tap(skip8_stage)    # pool1: index 2, start 7, jump 8

        self.fc6 = nn.Conv2d(256, fc_channels, 6)
        self.drop6 = nn.Dropout(dropout)
        self.fc7 = nn.Conv2d(fc_channels, fc_channels, 1)
        self.drop7 = nn.Dropout(dropout)
        self.score_fr = nn.Conv2d(fc_channels, num_classes, 1)
        # Registration order as ostrov's: score_skip16, upscore2, score_skip8, upscore_skip16,
        # upscore. The skip scores start at zero (an untrained 8s starts as the 32s).
        self.score_skip16 = nn.Conv2d(self.skip16[3], num_classes, 1)
        self.upscore2 = TransposedUpsample(num_classes, num_classes, 2, 3, bilinear_init=True)
        self.score_skip8 = nn.Conv2d(self.skip8[3], num_classes, 1)
        self.upscore_skip16 = TransposedUpsample(num_classes, num_classes, 2, 3,
                                                 bilinear_init=True)
        with torch.no_grad():
            for conv in (self.score_skip16, self.score_skip8):
                conv.weight.zero_()
                conv.bias.zero_()
        self.upscore = TransposedUpsample(num_classes, num_classes, 8, 15, bilinear_init=True)

    def padded_side(self, side):
        units = 1 + (side - 1 + 31) // 32
        s = self.margin + side
        while _score_units(s) < units:
            s += 1
        return s

    def forward(self, x):
        h, w = x.size(2), x.size(3)
        hp, wp = self.padded_side(h), self.padded_side(w)
        y, _ = pad_input(x, self.margin, hp - self.margin - h, self.margin, wp - self.margin - w,
                         self.input_padding)
        tap16 = tap8 = None
        for index, module in enumerate(self.features):
            y = module(y)
            if index == self.skip16[0]:
                tap16 = y
            if index == self.skip8[0]:
                tap8 = y
        y = self.drop6(torch.relu(self.fc6(y)))
        y = self.drop7(torch.relu(self.fc7(y)))
        y = self.score_fr(y)

        def crop_at(t, offset, ch, cw):
            assert offset >= 0 and offset + ch <= t.size(2) and offset + cw <= t.size(3)
            return t[:, :, offset:offset + ch, offset:offset + cw]

        y = self.upscore2(y)
        s = self.score_skip16(tap16)
        off = (self.score_start - self.skip16[1]) // self.skip16[2]
        y = fuse_sum(y, crop_at(s, off, y.size(2), y.size(3)))
        y = self.upscore_skip16(y)
        s = self.score_skip8(tap8)
        off = (self.score_start - self.skip8[1]) // self.skip8[2]
        y = fuse_sum(y, crop_at(s, off, y.size(2), y.size(3)))
        y = self.upscore(y)
        # The x8 kernel puts score unit i on output pixel 8i + 3: image pixel 0 is output 3.
        return crop_at(y, 8 // 2 - 1, h, w)


# --------------------------------------------------------------------------------------------
# FC-DenseNet56 (models/src/segmentation/fc_densenet.cpp)


class DenseLayer(nn.Module):
    def __init__(self, cin, growth, dropout):
        super().__init__()
        self.norm = nn.BatchNorm2d(cin)
        self.conv = nn.Conv2d(cin, growth, 3, padding=1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return self.drop(self.conv(torch.relu(self.norm(x))))


class DenseBlock(nn.Module):
    def __init__(self, cin, growth, count, dropout):
        super().__init__()
        self.layers = nn.ModuleList(
            [DenseLayer(cin + i * growth, growth, dropout) for i in range(count)])

    def forward(self, x):
        """-> (stack = cat(x, new), new = cat of the layers' outputs)."""
        stack, fresh = x, []
        for layer in self.layers:
            y = layer(stack)
            stack = torch.cat([stack, y], 1)
            fresh.append(y)
        return stack, torch.cat(fresh, 1)


class TransitionDown(nn.Module):
    def __init__(self, channels, dropout):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, channels, 1)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        return F.max_pool2d(self.drop(self.conv(torch.relu(self.norm(x)))), 2, 2)


class FCDenseNet(nn.Module):
    def __init__(self, num_classes=NUM_CLASSES, in_channels=3, growth_rate=12,
                 layers_per_block=(4,) * 11, first_channels=48, dropout=0.2,
                 input_padding="reflect"):
        super().__init__()
        self.input_padding = input_padding
        k = growth_rate
        blocks = list(layers_per_block)
        pools = len(blocks) // 2
        self.pools = pools
        self.first_conv = nn.Conv2d(in_channels, first_channels, 3, padding=1)
        self.down_blocks = nn.ModuleList()
        self.transitions_down = nn.ModuleList()
        self.transitions_up = nn.ModuleList()
        self.up_blocks = nn.ModuleList()
        m = first_channels
        skip_channels = []
        for b in range(pools):
            self.down_blocks.append(DenseBlock(m, k, blocks[b], dropout))
            m += k * blocks[b]
            skip_channels.append(m)
            self.transitions_down.append(TransitionDown(m, dropout))
        self.bottleneck = DenseBlock(m, k, blocks[pools], dropout)
        previous_new = k * blocks[pools]
        last_stack = 0
        for u in range(pools):
            self.transitions_up.append(
                TransposedUpsample(previous_new, previous_new, 2, kernel_size=3))
            cin = previous_new + skip_channels[pools - 1 - u]
            n = blocks[pools + 1 + u]
            self.up_blocks.append(DenseBlock(cin, k, n, dropout))
            previous_new = k * n
            last_stack = cin + k * n
        self.head = nn.Conv2d(last_stack, num_classes, 1)
        with torch.no_grad():
            for mod in self.modules():
                if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)):
                    nn.init.kaiming_uniform_(mod.weight, 0.0, "fan_in", "relu")
                    nn.init.zeros_(mod.bias)

    def forward(self, x):
        y, window = pad_to_multiple(x, 1 << self.pools, self.input_padding)
        y = self.first_conv(y)
        skips = []
        for b in range(self.pools):
            y, _ = self.down_blocks[b](y)
            skips.append(y)
            y = self.transitions_down[b](y)
        stack, new = self.bottleneck(y)
        for u in range(self.pools):
            up = self.transitions_up[u](new)
            stack, new = self.up_blocks[u](torch.cat([up, skips[self.pools - 1 - u]], 1))
        return crop_to_input(self.head(stack), window)


# --------------------------------------------------------------------------------------------
# PSPNet with dilated ResNet-18 (models/src/segmentation/pspnet.cpp)


def _dilate_layer(layer, dilation):
    """ostrov's dilate_layer: stride 2 -> 1; 3x3 convs dilated (dilation/2 for the strided one)."""
    for m in layer.modules():
        if isinstance(m, nn.Conv2d):
            strided = m.stride[0] == 2
            if strided:
                m.stride = (1, 1)
            if m.kernel_size[0] == 3:
                d = dilation // 2 if strided else dilation
                m.dilation = (d, d)
                m.padding = (d, d)


def _upsample_to(y, h, w):
    return F.interpolate(y, size=(h, w), mode="bilinear", align_corners=True)


class PSPNet(nn.Module):
    """forward(x): training mode -> (main, aux); eval mode -> main (see the module docstring)."""

    def __init__(self, num_classes=NUM_CLASSES, bins=(1, 2, 3, 6), dropout=0.1, aux=True,
                 aux_channels=256, aux_weight=0.4, head_channels=512, input_padding="reflect"):
        super().__init__()
        self.bins = list(bins)
        self.aux = aux
        self.aux_weight = aux_weight
        self.input_padding = input_padding
        self.backbone = torchvision.models.resnet18()  # torchvision init = ostrov ResNet init
        _dilate_layer(self.backbone.layer3, 2)
        _dilate_layer(self.backbone.layer4, 4)
        del self.backbone.fc
        c4, c3 = 512, 256
        reduced = c4 // len(self.bins)
        self.pyramid = nn.ModuleList([ConvBnAct(c4, reduced, 1) for _ in self.bins])
        self.bottleneck = ConvBnAct(c4 + len(self.bins) * reduced, head_channels, 3)
        self.dropout = nn.Dropout2d(dropout)
        self.classifier = nn.Conv2d(head_channels, num_classes, 1)
        if aux:
            self.aux_conv = ConvBnAct(c3, aux_channels, 3)
            self.aux_classifier = nn.Conv2d(aux_channels, num_classes, 1)
        with torch.no_grad():
            for m in self.modules():
                if isinstance(m, ConvBnAct):
                    nn.init.kaiming_normal_(m.conv.weight, 0.0, "fan_out", "relu")

    def _run(self, x, with_aux):
        y, window = pad_to_multiple(x, 8, self.input_padding, 1, 9)
        hp, wp = y.size(2), y.size(3)
        b = self.backbone
        y = b.maxpool(b.relu(b.bn1(b.conv1(y))))
        y = b.layer2(b.layer1(y))
        l3 = b.layer3(y)
        f = b.layer4(l3)
        h, w = f.size(2), f.size(3)
        parts = [f]
        for bin_, branch in zip(self.bins, self.pyramid):
            pooled = F.adaptive_avg_pool2d(f, (bin_, bin_))
            parts.append(_upsample_to(branch(pooled), h, w))
        y = self.bottleneck(torch.cat(parts, 1))
        y = self.classifier(self.dropout(y))
        main = crop_to_input(_upsample_to(y, hp, wp), window)
        if not (with_aux and self.aux):
            return main, None
        a = self.aux_classifier(self.dropout(self.aux_conv(l3)))
        return main, crop_to_input(_upsample_to(a, hp, wp), window)

    def forward_with_aux(self, x):
        return self._run(x, True)

    def forward(self, x):
        if self.training:
            return self._run(x, True)
        return self._run(x, False)[0]


# --------------------------------------------------------------------------------------------
# Light SSD (models/src/detection/ssd.cpp, SSDOptions::light)


class SSDResNetBackbone(ResNetEncoder):
    """The maps of layer3 (4B channels) and layer4 (8B) of a ResNet-18 of base width B, then
    `num_extra` stages Conv1x1 -> 2B, BN, ReLU, Conv3x3/2 -> 4B, BN, ReLU (no biases)."""

    def __init__(self, num_extra=3, width=64):
        super().__init__(18, width)
        extra, cin = [], 8 * width
        for _ in range(num_extra):
            extra.append(nn.Sequential(
                nn.Conv2d(cin, 2 * width, 1, bias=False), nn.BatchNorm2d(2 * width),
                nn.ReLU(inplace=True),
                nn.Conv2d(2 * width, 4 * width, 3, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(4 * width), nn.ReLU(inplace=True)))
            cin = 4 * width
        self.extra = nn.ModuleList(extra)

    def forward(self, x):
        y = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        y = self.layer3(self.layer2(self.layer1(y)))
        maps = [y]
        y = self.layer4(y)
        maps.append(y)
        for block in self.extra:
            y = block(y)
            maps.append(y)
        return maps


class SSDScoringHead(nn.Module):
    def __init__(self, in_channels, num_anchors, num_columns):
        super().__init__()
        self.num_columns = num_columns
        self.module_list = nn.ModuleList(
            [nn.Conv2d(c, a * num_columns, 3, padding=1) for c, a in zip(in_channels, num_anchors)])
        with torch.no_grad():
            for m in self.module_list:
                nn.init.xavier_uniform_(m.weight)
                nn.init.constant_(m.bias, 0.0)

    def forward(self, maps):
        out = []
        for conv, m in zip(self.module_list, maps):
            r = conv(m)
            n, _, h, w = r.shape
            r = r.view(n, -1, self.num_columns, h, w).permute(0, 3, 4, 1, 2)
            out.append(r.reshape(n, -1, self.num_columns))
        return torch.cat(out, 1)


class SSDHead(nn.Module):
    def __init__(self, in_channels, num_anchors, num_classes):
        super().__init__()
        self.classification_head = SSDScoringHead(in_channels, num_anchors, num_classes)
        self.regression_head = SSDScoringHead(in_channels, num_anchors, 4)


class SSDLight(nn.Module):
    """forward(x [N,3,256,256]) -> (locations [N,P,4], scores [N,P,num_classes])."""

    def __init__(self, num_classes=NUM_CLASSES, num_extra=3, width=64):
        super().__init__()
        self.backbone = SSDResNetBackbone(num_extra, width)
        channels = [4 * width, 8 * width] + [4 * width] * num_extra
        aspect_ratios = [[2], [2, 3], [2, 3], [2], [2]]
        num_anchors = [2 + 2 * len(r) for r in aspect_ratios]  # 4, 6, 6, 4, 4
        self.head = SSDHead(channels, num_anchors, num_classes)

    def forward(self, x):
        maps = self.backbone(x)
        return self.head.regression_head(maps), self.head.classification_head(maps)


# --------------------------------------------------------------------------------------------


def build(name, num_classes=NUM_CLASSES):
    """The model `name` (one of MODEL_NAMES) with the benchmark configs' options."""
    if name == "unet":
        return UNet(num_classes, in_channels=3, depth=4, base_width=16, batch_norm=True)
    if name == "fcn8s":
        return FCN8s(num_classes, fc_channels=512, dropout=0.5)
    if name == "fc_densenet56":
        return FCDenseNet(num_classes, growth_rate=12, layers_per_block=(4,) * 11, dropout=0.2)
    if name == "pspnet_r18":
        return PSPNet(num_classes, bins=(1, 2, 3, 6), dropout=0.1, aux=True, aux_weight=0.4)
    if name == "ssd_light":
        return SSDLight(num_classes)
    if name == "unet_resnet18":
        return ResNetUNet(num_classes, depth=18, base_channels=32)
    raise ValueError("unknown model %r (known: %s)" % (name, ", ".join(MODEL_NAMES)))


def param_shapes(name, num_classes=NUM_CLASSES):
    """Sorted list of the parameter shapes (tuples) of build(name)."""
    return sorted(tuple(p.shape) for p in build(name, num_classes).parameters())


def param_count(name, num_classes=NUM_CLASSES):
    return sum(p.numel() for p in build(name, num_classes).parameters())
