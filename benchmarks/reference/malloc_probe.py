"""Median latency of workloads.py steps in PyTorch-Python, to compare glibc's default malloc
thresholds with the ones ostrov's core::tune_allocator sets (docs/performance.md):

    /usr/bin/python3 benchmarks/reference/malloc_probe.py lraspp_mnv3_infer
    MALLOC_MMAP_THRESHOLD_=33554432 MALLOC_TRIM_THRESHOLD_=1073741824 \
        /usr/bin/python3 benchmarks/reference/malloc_probe.py lraspp_mnv3_infer
"""
import os
import sys
import time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import torch
from reference import workloads
torch.set_num_threads(2)
for name in sys.argv[1:]:
    step = getattr(workloads, name)()
    for _ in range(2):
        step()
    times = []
    for _ in range(8):
        t = time.perf_counter(); step(); times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    print(name, "median %.1f ms" % times[len(times) // 2], "MALLOC_MMAP_THRESHOLD_=" + os.environ.get("MALLOC_MMAP_THRESHOLD_", "default"), flush=True)
