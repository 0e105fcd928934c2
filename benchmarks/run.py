#!/usr/bin/python3
"""`make bench`: times every ostrov workload (build/bin/ostrov_bench, Google Benchmark) and the
same work in PyTorch-Python/scipy (benchmarks/reference/workloads.py) alternately, round after
round, on this machine, then prints one table and writes it as JSON.

    /usr/bin/python3 benchmarks/run.py [--build build] [--filter REGEX] [--rounds 4] [--reps 2]
                                       [--threads N] [--out benchmarks/results/latest.json]

Each side reports `reps` repetitions per round; a repetition is the mean of as many iterations
as fill --min-time seconds (Google Benchmark's rule on the ostrov side, the same rule here).
The ms columns are medians over all repetitions of all rounds; ratio = ostrov / reference
(< 1: ostrov is faster) is the median over rounds of each round's paired ratio, so that the
slow drifts of a shared machine cancel; the JSON keeps each row's range of round ratios. Both sides use the same number of LibTorch intra-op threads.
"""
import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import torch  # noqa: E402

from reference import models as ref_models  # noqa: E402
from reference import workloads  # noqa: E402

# workload: (size shown in the table, ratio target, FLOP multiplier of one forward pass or None)
ROWS = {
    "unet_train": ("U-Net d4 w16, 8x3x128², CE, SGD", 0.9, 3),
    "unet_infer": ("U-Net d4 w16, 8x3x128²", 0.9, 1),
    "fcn8s_train": ("FCN-8s AlexNet, 4x3x224², CE, SGD", 1.0, 3),
    "fcn8s_infer": ("FCN-8s AlexNet, 4x3x224²", 1.0, 1),
    "fc_densenet56_train": ("FC-DenseNet56, 4x3x128², CE, SGD", 1.0, 3),
    "fc_densenet56_infer": ("FC-DenseNet56, 4x3x128²", 1.0, 1),
    "pspnet_r18_train": ("PSPNet dilated R18 + aux, 4x3x128², CE, SGD", 1.0, 3),
    "pspnet_r18_infer": ("PSPNet dilated R18, 4x3x128²", 1.0, 1),
    "unet_resnet18_train": ("U-Net over R18 w32, 8x3x128², CE, SGD", 1.0, 3),
    "unet_resnet18_infer": ("U-Net over R18 w32, 8x3x128²", 1.0, 1),
    "deeplabv3_mnv3_infer": ("DeepLabV3 MobileNetV3-L (torchvision's), 1x3x512²", 1.0, 1),
    "lraspp_mnv3_infer": ("LR-ASPP MobileNetV3-L (torchvision's), 1x3x512²", 0.9, 1),
    "ssd_light_train": ("SSD R18 light, 8x3x256², multibox, SGD", 0.9, 3),
    "ssd_light_infer": ("SSD R18 light, 8x3x256²", 0.9, 1),
    "ssd300_infer": ("SSD300-VGG16, 1 image 480x640, pre+net+post", 1.0, 1),
    "ssdlite320_infer": ("SSDLite320-MobileNetV3-L, 1 image 480x640, pre+net+post", 1.0, 1),
    "gatys_vgg19_256": ("VGG19 to conv5_1 fwd+bwd to image, 256²", 1.0, 2),
    "nms_10k": ("nms, 10000 boxes, IoU 0.5", 1.0, None),
    "box_iou_1000x8732": ("box_iou 1000 x 8732", 1.0, None),
    "roi_align_fwd_bwd": ("roi_align 2x256x50x68, 512 rois 7x7, fwd+bwd", 1.5, None),
    "lsa_50x8732": ("linear_sum_assignment 50 x 8732 (scipy)", 1.0, None),
    "ssd_targets_b32": ("SSD300 targets, 32 images, match + encode", 1.0, None),
    "confusion_matrix_100x512": ("confusion matrix, 100 masks 512², 21 classes", 1.0, None),
    "unet_weight_map_8x128": ("U-Net weight map, 8 label images 128², 10 objects (scipy EDT)", 1.0, None),
    "gemm_2048": ("float32 GEMM 2048³, OpenBLAS (the issue's peak)", 1.0, None),
    "conv1x1_peak": ("1x1 conv 1024->1024 on 64x64 = GEMM via oneDNN", 1.0, None),
}
LOADER = "loader_scenes"  # ostrov only: compared with what unet_train consumes


def ostrov_times(binary, name, reps, min_time, threads, env):
    cmd = [binary, f"--threads={threads}", f"--benchmark_filter=^{re.escape(name)}(/|$)",
           f"--benchmark_repetitions={reps}", f"--benchmark_min_time={min_time}",
           "--benchmark_format=json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    report = json.loads(out.stdout)
    runs = [b for b in report["benchmarks"] if b.get("run_type") == "iteration"]
    if not runs:
        raise RuntimeError(f"ostrov_bench ran no benchmark named {name}")
    return [b["real_time"] for b in runs], runs[-1]  # real_time is in ms (Unit kMillisecond)


def python_times(fn, reps, min_time):
    fn()  # warm-up, as the C++ side does before its loop
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    iterations = max(1, math.ceil(min_time / max(once, 1e-9)))
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        times.append((time.perf_counter() - start) * 1e3 / iterations)
    return times


def forward_flops(name):
    """FLOPs (2 x multiply-adds) of the convolutions and linear layers in one forward pass of
    the reference model, counted with forward hooks (the ostrov model is the same network)."""
    import torchvision
    run = None
    if name.startswith("gatys"):
        model = torchvision.models.vgg19(weights=None).features[:29]
        x = torch.zeros(1, 3, 256, 256)
    elif name.startswith("ssd300") or name.startswith("ssdlite320"):
        model = workloads.DETECTORS[name.split("_")[0]]()
        size = 300 if name.startswith("ssd300") else 320
        x = torch.zeros(1, 3, size, size)
        run = lambda: model.head(list(model.backbone(x).values()))  # noqa: E731 (backbone + heads)
    elif name.startswith("deeplabv3_mnv3") or name.startswith("lraspp_mnv3"):
        builder = (torchvision.models.segmentation.deeplabv3_mobilenet_v3_large
                   if name.startswith("deeplabv3") else
                   torchvision.models.segmentation.lraspp_mobilenet_v3_large)
        model = builder(weights=None, weights_backbone=None, num_classes=11)
        x = torch.zeros(1, 3, 512, 512)
    elif name.startswith("ssd_light"):
        model = ref_models.build("ssd_light")
        x = torch.zeros(8, 3, 256, 256)
    else:
        base = name.rsplit("_", 1)[0]
        batch, size = workloads.SEGMENTATION[base]
        model = ref_models.build(base)
        x = torch.zeros(batch, 3, size, size)
    if run is None:
        run = lambda: model(x)  # noqa: E731
    total = [0]

    def hook(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
            total[0] += 2 * output.numel() * k
        elif isinstance(module, torch.nn.ConvTranspose2d):
            k = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
            total[0] += 2 * inputs[0].numel() * k
        elif isinstance(module, torch.nn.Linear):
            total[0] += 2 * output.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules()
               if isinstance(m, (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.Linear))]
    model.eval()
    with torch.no_grad():
        run()
    for h in handles:
        h.remove()
    return total[0]


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--build", default=os.path.join(os.path.dirname(HERE), "build"))
    parser.add_argument("--filter", default="", help="regex on workload names")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--min-time", type=float, default=0.2)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--out", default=os.path.join(HERE, "results", "latest.json"))
    parser.add_argument("--markdown", action="store_true", help="also print the table as Markdown (docs/performance.md)")
    parser.add_argument("--compile", action="store_true",
                        help="also time the model rows under torch.compile (torch >= 2; Inductor's "
                             "CPU backend, compile time excluded): a third column")
    args = parser.parse_args()

    binary = os.path.join(args.build, "bin", "ostrov_bench")
    if not os.access(binary, os.X_OK):
        sys.exit(f"run.py: {binary} not found; build it first (make bench builds it)")
    torch.set_num_threads(args.threads)
    if args.compile and not hasattr(torch, "compile"):
        sys.exit(f"run.py: --compile needs torch >= 2 (this is {torch.__version__}); on Debian 13: "
                 "scripts/debian13.sh shell '/usr/bin/python3 benchmarks/run.py --build build-debian13 --compile ...'")
    env = dict(os.environ)
    selected = [n for n in list(ROWS) + [LOADER] if re.search(args.filter, n)]
    if not selected:
        sys.exit(f"run.py: no workload matches {args.filter!r}; workloads: {', '.join(list(ROWS) + [LOADER])}")
    for detector in workloads.DETECTORS:
        if detector + "_infer" in selected:
            env[f"OSTROV_BENCH_{detector.upper()}_WEIGHTS"] = workloads.detector_weights_path(detector)

    print(f"# {len(selected)} workloads, {args.rounds} rounds x {args.reps} repetitions per side, "
          f"{args.threads} intra-op threads on both sides, torch {torch.__version__}", flush=True)
    results = {}
    for name in selected:
        ours, theirs, counters, round_ratios = [], [], {}, []
        compiled_times, compiled_ratios = [], []
        fn = workloads.WORKLOADS[name]() if name in workloads.WORKLOADS else None
        cfn = None
        if args.compile and name in workloads.COMPILABLE:
            cfn = workloads.WORKLOADS[name](compiled=True)
            start = time.perf_counter()
            cfn()  # compiles (forward, and backward for the training rows)
            print(f"  {name}: torch.compile took {time.perf_counter() - start:.1f} s", flush=True)
        for _ in range(args.rounds):
            times, last = ostrov_times(binary, name, args.reps, args.min_time, args.threads, env)
            ours += times
            counters = last
            if fn is not None:
                ref_times = python_times(fn, args.reps, args.min_time)
                theirs += ref_times
                round_ratios.append(statistics.median(times) / statistics.median(ref_times))
            if cfn is not None:
                ctimes = python_times(cfn, args.reps, args.min_time)
                compiled_times += ctimes
                compiled_ratios.append(statistics.median(times) / statistics.median(ctimes))
        fn = cfn = None
        results[name] = {"ostrov": statistics.median(ours),
                         "reference": statistics.median(theirs) if theirs else None,
                         # Paired: each round's ostrov median over the reference median measured
                         # right after it, so slow drifts of this shared machine cancel.
                         "ratio": statistics.median(round_ratios) if round_ratios else None,
                         "ratio_range": [min(round_ratios), max(round_ratios)] if round_ratios else None,
                         "compiled": statistics.median(compiled_times) if compiled_times else None,
                         "compiled_ratio": statistics.median(compiled_ratios) if compiled_ratios else None,
                         "counters": counters}
        ref = results[name]["reference"]
        print(f"  {name}: ostrov {results[name]['ostrov']:.2f} ms"
              + (f", reference {ref:.2f} ms, ratio per round {', '.join(f'{r:.2f}' for r in round_ratios)}"
                 if ref is not None else "")
              + (f", compiled {results[name]['compiled']:.2f} ms, ratio per round "
                 f"{', '.join(f'{r:.2f}' for r in compiled_ratios)}" if compiled_ratios else ""),
              flush=True)

    # The machine's measured peak: the faster of OpenBLAS's GEMM and oneDNN's 1x1 convolution
    # (oneDNN, which runs LibTorch's convolutions, outruns OpenBLAS severalfold here).
    peaks = {}
    if "gemm_2048" in results:
        peaks["gemm_2048"] = 2 * 2048 ** 3 / (results["gemm_2048"]["ostrov"] * 1e-3) / 1e9
    if "conv1x1_peak" in results:
        peaks["conv1x1_peak"] = 2 * 1024 * 1024 * 4096 / (results["conv1x1_peak"]["ostrov"] * 1e-3) / 1e9
    peak = max(peaks.values()) if peaks else None
    rows = []
    for name in selected:
        r = results[name]
        if name == LOADER:
            # ms per image loaded vs ms per image the U-Net training step consumes.
            per_image = r["ostrov"] / 64
            unet = results.get("unet_train")
            consumed = unet["ostrov"] / workloads.SEGMENTATION["unet"][0] if unet else None
            rows.append({"workload": name, "size": "64 scene PNGs 256² -> 128², batch 8, 1 worker; "
                         "ms/image vs unet_train's ms/image", "ostrov_ms": per_image,
                         "reference_ms": consumed, "ratio": per_image / consumed if consumed else None,
                         "target": 0.5})
            continue
        size, target, flop_mult = ROWS[name]
        row = {"workload": name, "size": size, "ostrov_ms": r["ostrov"], "reference_ms": r["reference"],
               "ratio": r["ratio"], "ratio_range": r["ratio_range"], "target": target}
        if r["compiled"] is not None:
            row["compiled_ms"] = r["compiled"]
            row["compiled_ratio"] = r["compiled_ratio"]
        if "params" in r["counters"]:
            row["params"] = int(r["counters"]["params"])
            model = name.rsplit("_", 1)[0]
            if model in ref_models.MODEL_NAMES and ref_models.param_count(model) != row["params"]:
                sys.exit(f"run.py: {name}: ostrov has {row['params']} parameters but the reference "
                         f"model {ref_models.param_count(model)}: benchmarks/reference/models.py "
                         "no longer mirrors the C++ model")
        if flop_mult:
            flops = flop_mult * forward_flops(name)
            row["gflop_per_s"] = flops / (r["ostrov"] * 1e-3) / 1e9
            if peak:
                row["peak_percent"] = 100 * row["gflop_per_s"] / peak
        rows.append(row)

    print()
    print(f"{'workload':26} {'ostrov ms':>10} {'ref ms':>10} {'ratio':>6} {'target':>6} {'rounds':>11} {'GFLOP/s':>8} {'%peak':>6}  size")
    for row in rows:
        fmt = lambda v, f: (f % v) if v is not None else "-"  # noqa: E731
        ok = "" if row["ratio"] is None else (" " if row["ratio"] <= row["target"] else "*")
        print(f"{row['workload']:26} {fmt(row['ostrov_ms'], '%10.2f')} {fmt(row['reference_ms'], '%10.2f')} "
              f"{fmt(row['ratio'], '%6.2f')}{ok}{fmt(row['target'], '%5.2f')} "
              f"{('%.2f-%.2f' % tuple(row['ratio_range'])) if row.get('ratio_range') else '-':>11} "
              f"{fmt(row.get('gflop_per_s'), '%8.1f')} {fmt(row.get('peak_percent'), '%5.1f%%')}  {row['size']}")
    compiled_rows = [row for row in rows if "compiled_ms" in row]
    if compiled_rows:
        print(f"\n{'workload':26} {'ostrov ms':>10} {'eager ms':>10} {'compile ms':>10} {'ratio':>6}  (ratio = ostrov / torch.compile)")
        for row in compiled_rows:
            print(f"{row['workload']:26} {row['ostrov_ms']:10.2f} {row['reference_ms']:10.2f} "
                  f"{row['compiled_ms']:10.2f} {row['compiled_ratio']:6.2f}")
    for name, value in peaks.items():
        print(f"\npeak {name}: {value:.1f} GFLOP/s", end="")
    print("\n%peak is against the higher peak; * = ratio above its target")
    if args.markdown:
        print("\n| workload | size | ostrov ms | PyTorch ms | ratio (rounds) | target | GFLOP/s | % peak |")
        print("|---|---|---:|---:|---:|---:|---:|---:|")
        for row in rows:
            rng = row.get("ratio_range")
            ratio = "-" if row["ratio"] is None else (f"{row['ratio']:.2f}" + (f" ({rng[0]:.2f}–{rng[1]:.2f})" if rng else ""))
            ref = "-" if row["reference_ms"] is None else f"{row['reference_ms']:.1f}"
            gf = f"{row['gflop_per_s']:.0f}" if "gflop_per_s" in row else "-"
            pk = f"{row['peak_percent']:.0f}" if "peak_percent" in row else "-"
            print(f"| {row['workload']} | {row['size']} | {row['ostrov_ms']:.1f} | {ref} | {ratio} | "
                  f"{row['target']:.2f} | {gf} | {pk} |")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"threads": args.threads, "rounds": args.rounds, "repetitions": args.reps,
                   "peak_gflops": peaks, "rows": rows}, f, indent=1)
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
