#!/usr/bin/env python3
"""Knowledge distillation on Fashion-MNIST with PyTorch and kdlib's loss.

1. A teacher CNN (conv32-conv64-fc128) is trained on the labeled training set.
2. A small student (conv16-conv32-fc64) is trained on only --labeled images,
   once with plain cross-entropy (baseline) and once with kdlib's Hinton loss
       kdlib.torch.kl_distill(student_logits, teacher_logits, labels,
                              temperature=4, alpha=0.9)
   from the same initial weights, and both are evaluated on the test set.

Data: the gzip IDX files of Debian's dataset-fashion-mnist package
(/usr/share/datasets/fashion-mnist/), or any MNIST-format directory (--data).
Run from a source tree with
    KDLIB_LIBRARY=build/src/libkd.so PYTHONPATH=bindings/python \\
        python3 examples/python/distill_torch.py --teacher-epochs 1 --student-steps 600
"""
import argparse
import gzip
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

try:
    import kdlib.torch as kdt
except ImportError:   # running from the source tree without PYTHONPATH
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                    "bindings", "python"))
    import kdlib.torch as kdt


def read_idx(path):
    """An IDX file (gzip or raw) as a NumPy array."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    if data[0] != 0 or data[1] != 0 or data[2] != 8:
        raise ValueError("%s: not an unsigned-byte IDX file" % path)
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def find(directory, stem):
    for name in (stem + ".gz", stem):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            return path
    raise FileNotFoundError("%s(.gz) not found in %s" % (stem, directory))


def load(directory):
    out = []
    for split in ("train", "t10k"):
        x = read_idx(find(directory, "%s-images-idx3-ubyte" % split)).astype(np.float32) / 255.0
        y = read_idx(find(directory, "%s-labels-idx1-ubyte" % split)).astype(np.int64)
        x = (x - 0.286) / 0.353                 # Fashion-MNIST mean / std
        out += [torch.from_numpy(x[:, None]), torch.from_numpy(y)]
    return out


def cnn(c1, c2, hidden):
    return nn.Sequential(
        nn.Conv2d(1, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(c2 * 49, hidden), nn.ReLU(), nn.Linear(hidden, 10))


@torch.no_grad()
def accuracy(model, x, y, batch=1000):
    model.eval()
    correct = sum((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
                  for i in range(0, len(x), batch))
    model.train()
    return correct / len(x)


@torch.no_grad()
def logits_of(model, x, batch=1000):
    model.eval()
    out = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
    model.train()
    return out


def train_student(init, x, y, teacher_logits, args, distill):
    model = cnn(16, 32, 64)
    model.load_state_dict(init)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9)
    g = torch.Generator().manual_seed(args.seed + 1)
    for step in range(args.student_steps):
        idx = torch.randint(0, len(x), (args.batch,), generator=g)
        logits = model(x[idx])
        if distill:
            loss = kdt.kl_distill(logits, teacher_logits[idx], y[idx],
                                  temperature=args.temperature, alpha=args.alpha)
        else:
            loss = kdt.cross_entropy(logits, y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        if (step + 1) % max(1, args.student_steps // 4) == 0:
            print("    step %5d  loss %.4f" % (step + 1, loss.item()), flush=True)
    return model


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--teacher-epochs", type=float, default=2.0)
    ap.add_argument("--teacher-subset", type=int, default=60000,
                    help="training images the teacher sees (default all)")
    ap.add_argument("--labeled", type=int, default=1000, help="labeled images of the student")
    ap.add_argument("--student-steps", type=int, default=1500)
    ap.add_argument("--test-subset", type=int, default=10000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--temperature", type=float, default=4.0)
    ap.add_argument("--alpha", type=float, default=0.9)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    x_train, y_train, x_test, y_test = load(args.data)
    x_test, y_test = x_test[:args.test_subset], y_test[:args.test_subset]
    perm = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(args.seed))
    xt, yt = x_train[perm[:args.teacher_subset]], y_train[perm[:args.teacher_subset]]
    xs, ys = x_train[perm[:args.labeled]], y_train[perm[:args.labeled]]
    import kdlib
    print("kdlib %s from %s" % (kdlib.version(), kdlib.library_path))
    print("teacher: conv32-conv64-fc128 on %d images, %.3g epochs" % (len(xt), args.teacher_epochs))

    t0 = time.time()
    teacher = cnn(32, 64, 128)
    opt = torch.optim.SGD(teacher.parameters(), lr=args.lr, momentum=0.9)
    steps = int(args.teacher_epochs * len(xt) / args.batch)
    g = torch.Generator().manual_seed(args.seed)
    for step in range(steps):
        if step % (len(xt) // args.batch) == 0:
            order = torch.randperm(len(xt), generator=g)
        k = step % (len(xt) // args.batch)
        idx = order[k * args.batch:(k + 1) * args.batch]
        loss = kdt.cross_entropy(teacher(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    t_acc = accuracy(teacher, x_test, y_test)
    print("  teacher test accuracy %.2f%%  (%.0f s)" % (100 * t_acc, time.time() - t0), flush=True)

    teacher_logits = logits_of(teacher, xs)
    init = cnn(16, 32, 64).state_dict()
    results = {}
    for name, distill in (("student alone", False), ("student distilled", True)):
        t0 = time.time()
        print("%s: conv16-conv32-fc64 on %d labeled images, %d steps%s"
              % (name, len(xs), args.student_steps,
                 " (T=%g, alpha=%g)" % (args.temperature, args.alpha) if distill else ""))
        model = train_student(init, xs, ys, teacher_logits, args, distill)
        results[name] = accuracy(model, x_test, y_test)
        print("  %s test accuracy %.2f%%  (%.0f s)" % (name, 100 * results[name], time.time() - t0),
              flush=True)
    print("summary: teacher %.2f%%, student alone %.2f%%, distilled %.2f%% (%+.2f points)"
          % (100 * t_acc, 100 * results["student alone"], 100 * results["student distilled"],
             100 * (results["student distilled"] - results["student alone"])))


if __name__ == "__main__":
    main()
