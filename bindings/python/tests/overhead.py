#!/usr/bin/env python3
"""Per-call time of the KD loss (kl_distill, T = 4, alpha = 0.9, forward and
backward) through PyTorch, kdlib.torch, the NumPy API, an empty
autograd.Function (the autograd floor) and the C call (kd-bench --mode fused),
all in one run, one thread:

    KDLIB_LIBRARY=build/src/libkd.so PYTHONPATH=bindings/python \\
      python3 bindings/python/tests/overhead.py [--kd-bench build/bench/kd-bench] [NxC ...]

Prints a Markdown table; the ratios compare numbers of the same run.  Not a
test (timings belong in bench programs, not in tests)."""
import argparse
import os
import subprocess
import time

import numpy as np
import torch
import torch.nn.functional as F

import kdlib
import kdlib.torch as kdt


def best_time(f, budget=2.0):
    f()
    t0 = time.perf_counter()
    f()
    one = max(time.perf_counter() - t0, 1e-7)
    reps = max(3, min(5000, int(budget / 5 / one)))
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(reps):
            f()
        best = min(best, (time.perf_counter() - t0) / reps)
    return best


def c_time(exe, n, c):
    out = subprocess.run([exe, "--loss", "kl_distill", "--shape", "%dx%d" % (n, c), "--threads", "1",
                          "--mode", "fused", "--reps", "50", "--tsv", "--no-triad"],
                         capture_output=True, text=True, check=True).stdout
    row = [line.split("\t") for line in out.splitlines() if line.startswith("kl_distill\tfused")][-1]
    return float(row[5])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shapes", nargs="*", default=["128x10", "1024x100", "4096x1000"])
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--kd-bench", default=os.path.join(here, "..", "..", "..", "build", "bench", "kd-bench"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    print("| shape | torch | kdlib.torch | NumPy API | empty Function | C (kd-bench) | kdlib.torch / C | (kdlib.torch - empty) / C |")
    print("|---|---|---|---|---|---|---|---|")
    for shape in args.shapes:
        n, c = (int(v) for v in shape.split("x"))
        g = torch.Generator().manual_seed(0)
        s = torch.randn(n, c, generator=g).requires_grad_(True)
        t = torch.randn(n, c, generator=g)
        y = torch.randint(0, c, (n,), generator=g)
        sn, tn, yn = s.detach().numpy(), t.numpy(), y.numpy().astype(np.int32)

        def ref():
            s.grad = None
            (0.9 * 16 * F.kl_div(F.log_softmax(s / 4, 1), F.softmax(t / 4, 1), reduction="batchmean")
             + 0.1 * F.cross_entropy(s, y)).backward()

        def kd():
            s.grad = None
            kdt.kl_distill(s, t, y, temperature=4.0, alpha=0.9).backward()

        class Empty(torch.autograd.Function):
            @staticmethod
            def forward(ctx, x):
                return x.new_zeros(())

            @staticmethod
            def backward(ctx, go):
                return torch.empty(n, c)

        def empty():
            s.grad = None
            Empty.apply(s).backward()

        times = [best_time(f) for f in (ref, kd, lambda: kdlib.kl_distill(sn, tn, yn, 4.0, 0.9), empty)]
        tc = c_time(args.kd_bench, n, c)
        us = ["%.1f us" % (v * 1e6) for v in times + [tc]]
        print("| %s | %s | %.2f | %.2f |" % (shape, " | ".join(us), times[1] / tc, (times[1] - times[3]) / tc))


if __name__ == "__main__":
    main()
