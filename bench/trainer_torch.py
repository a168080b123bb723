#!/usr/bin/env python3
"""Seconds per epoch of PyTorch eager on the example trainer's nets.

The same experiment as kd-bench-trainer (bench/trainer.c): a "convA-convB-fcH"
net (3x3 convolutions with padding 1, ReLU, 2x2 max-pool; fully connected +
ReLU; a linear head to 10 classes), batches of 28 x 28 single-channel images,
cross-entropy, SGD momentum 0.9 and weight decay 5e-4, two warm-up steps, then
S timed steps.  Prints: torch, net, batch, threads, steps, seconds, seconds
per 60,000 images (tab-separated).
"""
import argparse
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


def build(spec, h=28, w=28, classes=10):
    layers, ch, size = [], 1, h * w
    for block in spec.split("-"):
        if block.startswith("conv"):
            out = int(block[4:])
            layers += [nn.Conv2d(ch, out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            ch, h, w = out, h // 2, w // 2
            size = ch * h * w
        elif block.startswith("fc"):
            out = int(block[2:])
            if not any(isinstance(m, nn.Flatten) for m in layers):
                layers.append(nn.Flatten())
            layers += [nn.Linear(size, out), nn.ReLU()]
            size = out
        else:
            raise SystemExit("unknown block " + block)
    if not any(isinstance(m, nn.Flatten) for m in layers):
        layers.append(nn.Flatten())
    layers.append(nn.Linear(size, classes))
    return nn.Sequential(*layers)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--net", default="conv32-conv64-fc128")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    model = build(a.net)
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=5e-4)
    pool = 16
    x = torch.rand(pool, a.batch, 1, 28, 28) * 2 - 1
    y = torch.randint(0, 10, (pool, a.batch))
    t0 = 0.0
    for s in range(-2, a.steps):
        if s == 0:
            t0 = time.perf_counter()
        p = (s + 2) % pool
        loss = F.cross_entropy(model(x[p]), y[p])
        opt.zero_grad(set_to_none=False)
        loss.backward()
        opt.step()
    t = time.perf_counter() - t0
    print("torch\t%s\t%d\t%d\t%d\t%.3f\t%.2f" % (a.net, a.batch, a.threads, a.steps, t,
                                                 t / (a.steps * a.batch) * 60000.0))


if __name__ == "__main__":
    main()
