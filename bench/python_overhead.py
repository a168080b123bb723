#!/usr/bin/env python3
"""Per-call time of one forward+backward through the PyTorch expression,
kdlib.torch (autograd), kdlib.torch's no-autograd *_forward_backward fast
path (alone, with out= reusing a gradient buffer, and followed by
logits.backward(grad)), an empty
torch.autograd.Function (the floor of any autograd extension) and the C call
(kd-bench --mode fused), in one run, one thread, and print a Markdown table
(docs/performance.md, "The Python binding's overhead"):

    KDLIB_LIBRARY=build/src/libkd.so PYTHONPATH=bindings/python OMP_NUM_THREADS=1 \\
      python3 bench/python_overhead.py [--kd-bench build/bench/kd-bench] [--shapes 128x10 ...]

The PyTorch expressions are compare_torch.py's (tllib's definitions; the
same kd-bench configurations: KL T = 4, alpha = 0.9 with labels;
pseudo-label threshold 0; class balance on logits; MCC T = 2.5).  Every
timing is the fastest single call (kd-bench's statistic, its best
repetition), over rounds of the different paths interleaved so that a change
of machine load hits all of them.  Labels are int64 (torch's label
dtype), so the fast path's int64 -> int32 copy and range check are included.
"""
import argparse
import datetime
import os
import platform
import subprocess
import sys
import time

import torch
import torch.nn.functional as F

import kdlib._fast as kdlib_fast
import kdlib._lib as kdlib_lib
import kdlib.torch as kdt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_torch import torch_step  # noqa: E402  (the PyTorch definitions)

SHAPES = ["128x10", "1024x100", "4096x1000"]
KINDS = ["kl_distill", "pseudo_label", "class_balance", "mcc"]


def paths(kind, n, c):
    """The timed callables of one kind and shape: name -> f()."""
    g = torch.Generator().manual_seed(0)
    s = ((torch.rand(n, c, generator=g) - 0.5) * 8).requires_grad_(True)
    t = (torch.rand(n, c, generator=g) - 0.5) * 8
    y = torch.randint(0, c, (n,), generator=g)
    buf = torch.empty(n, c)
    out = None                       # fast(): a fresh gradient; fast_out(): into buf
    if kind == "kl_distill":
        def auto():
            return kdt.kl_distill(s, t, y, temperature=4.0, alpha=0.9)

        def fast():
            return kdt.kl_distill_forward_backward(s, t, y, 4.0, 0.9, out=out)
    elif kind == "pseudo_label":
        def auto():
            return kdt.pseudo_label(s, t, 0.0, return_mask=False)

        def fast():
            return kdt.pseudo_label_forward_backward(s, t, 0.0, out=out)
    elif kind == "class_balance":
        def auto():
            return kdt.class_balance(s, "logits")

        def fast():
            return kdt.class_balance_forward_backward(s, "logits", out=out)
    elif kind == "mcc":
        def auto():
            return kdt.mcc(s, 2.5)

        def fast():
            return kdt.mcc_forward_backward(s, 2.5, out=out)
    else:
        raise ValueError(kind)

    class Empty(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            return x.new_zeros(())

        @staticmethod
        def backward(ctx, go):
            return torch.empty(n, c)

    def fast_out():
        nonlocal out
        out = buf
        try:
            return fast()
        finally:
            out = None

    def run_torch():
        torch_step(torch, F, kind, s, t, y)

    def run_auto():
        s.grad = None
        auto().backward()

    def run_fast_backward():
        s.grad = None
        s.backward(fast()[1])

    def run_empty():
        s.grad = None
        Empty.apply(s).backward()

    return {"torch": run_torch, "kdlib.torch": run_auto, "fast": fast, "fast, out=": fast_out,
            "fast + backward": run_fast_backward, "empty Function": run_empty}


def interleaved_best(funcs, budget):
    """Fastest single call of each function over interleaved rounds (the
    statistic kd-bench reports: on a shared machine a mean includes the time
    slices other processes take, the minimum does not)."""
    per = {}
    for name, f in funcs.items():
        f()
        t0 = time.perf_counter()
        f()
        per[name] = max(time.perf_counter() - t0, 1e-7)
    rounds = 7
    reps = {k: max(1, min(2000, int(budget / rounds / 5 / v))) for k, v in per.items()}
    best = {k: float("inf") for k in funcs}
    clock = time.perf_counter
    for _ in range(rounds):
        for name, f in funcs.items():
            b = best[name]
            for _ in range(reps[name]):
                t0 = clock()
                f()
                t = clock() - t0
                if t < b:
                    b = t
            best[name] = b
    return best


class _InsideTimer:
    """Times the ctypes call kd_loss_forward_backward inside a binding call
    (the libkd kernel with its arguments, as kd-bench times it), so that the
    binding's own time is measured in the same call, on the same arrays, in
    the same process: immune to the run-to-run and process-to-process
    variation of a 16 MiB kernel, which is larger than the overhead itself."""

    def __init__(self):
        self.inside = 0.0
        self._real = (kdlib_lib.lib.kd_loss_forward_backward, kdlib_fast._fb)

    def _timed(self, real):
        clock = time.perf_counter

        def timed(*a):
            t0 = clock()
            try:
                return real(*a)
            finally:
                self.inside += clock() - t0
        return timed

    def __enter__(self):
        # the functional API's call (kdlib.torch) and the fast path's own prototype
        kdlib_lib.lib.kd_loss_forward_backward = self._timed(self._real[0])
        kdlib_fast._fb = self._timed(self._real[1])
        return self

    def __exit__(self, *exc):
        kdlib_lib.lib.kd_loss_forward_backward, kdlib_fast._fb = self._real


def same_call_ratio(f, calls):
    """Median over calls of (time of the whole binding call) / (time of its
    libkd call), and the median time outside libkd."""
    ratios, outside = [], []
    with _InsideTimer() as timer:
        f()
        for _ in range(calls):
            timer.inside = 0.0
            t0 = time.perf_counter()
            f()
            total = time.perf_counter() - t0
            ratios.append(total / timer.inside)
            outside.append(total - timer.inside)
    ratios.sort()
    outside.sort()
    return ratios[len(ratios) // 2], outside[len(outside) // 2]


def c_time(exe, kind, n, c):
    out = subprocess.run([exe, "--loss", kind, "--shape", "%dx%d" % (n, c), "--threads", "1",
                          "--mode", "fused", "--reps", "200" if n * c < 10 ** 6 else "20",
                          "--tsv", "--no-triad"],
                         capture_output=True, text=True, check=True).stdout
    rows = [line.split("\t") for line in out.splitlines() if line.startswith(kind + "\tfused")]
    return float(rows[-1][5])


def fmt(seconds):
    us = seconds * 1e6
    return "%.0f us" % us if us >= 100 else "%.1f us" % us


def cpu():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def loadavg():
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--kd-bench", default=os.path.join(here, "..", "build", "bench", "kd-bench"))
    ap.add_argument("--shapes", nargs="+", default=SHAPES)
    ap.add_argument("--kinds", nargs="+", default=KINDS)
    ap.add_argument("--budget", type=float, default=1.5,
                    help="seconds per path, kind and shape (default 1.5)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    start = loadavg()
    print("%s, %s, torch %s, one thread; /proc/loadavg before: %s"
          % (datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), cpu(),
             torch.__version__, start))
    print()
    cols = ["torch", "kdlib.torch", "fast", "fast, out=", "fast + backward", "empty Function"]
    print("| shape | kind | " + " | ".join(cols) + " | C (kd-bench) | kdlib.torch / C | fast / C "
          "| kdlib.torch / its C call | outside libkd | fast / its C call | outside libkd |")
    print("|---|---|" + "---|" * (len(cols) + 7))
    for shape in args.shapes:
        n, c = (int(v) for v in shape.split("x"))
        for kind in args.kinds:
            funcs = paths(kind, n, c)
            best = interleaved_best(funcs, args.budget)
            tc = c_time(args.kd_bench, kind, n, c)
            calls = max(21, min(2001, int(args.budget / best["kdlib.torch"])))
            same = [same_call_ratio(funcs[k], calls) for k in ("kdlib.torch", "fast")]
            print("| %s | %s | %s | %s | %.2f | %.2f | %.3f | %s | %.3f | %s |"
                  % (shape, kind, " | ".join(fmt(best[k]) for k in cols), fmt(tc),
                     best["kdlib.torch"] / tc, best["fast"] / tc, same[0][0], fmt(same[0][1]),
                     same[1][0], fmt(same[1][1])), flush=True)
    print()
    print("/proc/loadavg after: %s" % loadavg())


if __name__ == "__main__":
    main()
