#!/usr/bin/env python3
"""kd-pseudolabel's recipe in plain PyTorch: supervised vs FixMatch and
AdaMatch on Fashion-MNIST with 1,000 labels, to compare the C demo against.

The same as examples/kd_pseudolabel.c (not bit for bit: other random streams):
  - model conv16-conv32-fc64: 3x3 convolutions (padding 1) + ReLU + 2x2 max
    pool, a fully connected layer + ReLU, a linear head; He initialisation
    (N(0, 2/fan_in), the head N(0, 1/fan_in)), zero biases;
  - pixels in [0, 1] normalised by the mean and standard deviation of the
    training images; 1,000 labelled images (100 per class), the other 59,000
    unlabelled;
  - weak view: shift by up to 2 pixels, horizontal flip p = 0.5; strong view:
    shift by up to 4, flip, contrast (deviations from the image mean scaled
    by a factor uniform in [0.6, 1.4]), a 12x12 cutout, Gaussian noise sigma
    0.2 (normalised units); pixels shifted in or cut out are black;
  - a step: 64 labelled images (weak view) and 3 x 64 unlabelled ones;
    FixMatch: the current model's prediction on a weak view, no gradient,
    kept where its confidence >= 0.95, learned on a strong view, the masked
    cross-entropy averaged over all unlabelled rows, weight 1; AdaMatch (as
    USB): the weak views' probabilities aligned by (p_target + 1e-6) /
    (p_model + 1e-6) (EMAs 0.999 of the labelled batch's and the weak
    views' mean probabilities; p_model starts at the first batch's mean,
    p_target at uniform), kept where the aligned max >= 0.95 times the
    labelled batch's mean max probability, labelled by the aligned argmax;
  - SGD lr 0.03, Nesterov momentum 0.9, weight decay 5e-4 on every
    parameter, FixMatch's schedule lr * cos(7 pi k / (16 K)); an EMA of the
    weights (decay 0.999, Mean Teacher warm-up min(decay, 1 - 1/(t + 1)))
    evaluated with the model.

Run (one thread, as the C demo's --threads 1):
    python3 examples/python/pseudolabel_torch.py --methods supervised,fixmatch \\
        --steps 4000 --seed 1
"""
import argparse
import gzip
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def load_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(magic & 0xFF)]
    offset = 4 + 4 * len(dims)
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def load_split(directory, split):
    def find(kind):
        for name in (f"{split}-{kind}-idx{3 if kind == 'images' else 1}-ubyte",
                     f"{split}-{kind}.idx{3 if kind == 'images' else 1}-ubyte"):
            for ext in (".gz", ""):
                path = os.path.join(directory, name + ext)
                if os.path.exists(path):
                    return path
        raise FileNotFoundError(f"no {split} {kind} in {directory}")
    x = load_idx(find("images")).astype(np.float32) / 255.0
    y = load_idx(find("labels")).astype(np.int64)
    return x, y


class Net(nn.Module):
    def __init__(self, classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, padding=1)
        self.conv2 = nn.Conv2d(16, 32, 3, padding=1)
        self.fc = nn.Linear(32 * 7 * 7, 64)
        self.head = nn.Linear(64, classes)
        for layer in (self.conv1, self.conv2, self.fc, self.head):
            fan_in = layer.weight[0].numel()
            std = math.sqrt((1.0 if layer is self.head else 2.0) / fan_in)
            nn.init.normal_(layer.weight, 0.0, std)
            nn.init.zeros_(layer.bias)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        return self.head(F.relu(self.fc(x.flatten(1))))


def augment(x, strong, background, gen):
    """x: n x 1 x h x w (normalised); returns a new tensor."""
    n, _, h, w = x.shape
    s = 4 if strong else 2
    dy = torch.randint(-s, s + 1, (n, 1, 1), generator=gen)
    dx = torch.randint(-s, s + 1, (n, 1, 1), generator=gen)
    flip = torch.rand(n, 1, 1, generator=gen) < 0.5
    padded = F.pad(x[:, 0], (s, s, s, s), value=background)
    ys = torch.arange(h).view(1, h, 1)
    xs = torch.arange(w).view(1, 1, w)
    src_y = (ys - dy + s).expand(n, h, w)
    src_x = (torch.where(flip, w - 1 - xs, xs) - dx + s).expand(n, h, w)
    out = padded[torch.arange(n).view(n, 1, 1), src_y, src_x]
    if strong:
        mean = out.mean(dim=(1, 2), keepdim=True)
        f = 0.6 + 0.8 * torch.rand(n, 1, 1, generator=gen)
        out = mean + f * (out - mean)
        cy = torch.randint(0, h, (n, 1, 1), generator=gen)
        cx = torch.randint(0, w, (n, 1, 1), generator=gen)
        cut = (ys >= cy - 6) & (ys < cy + 6) & (xs >= cx - 6) & (xs < cx + 6)
        out = torch.where(cut, torch.full_like(out, background), out)
        out = out + 0.2 * torch.randn(out.shape, generator=gen)
    return out.unsqueeze(1)


class Sampler:
    """Endless shuffled passes over a pool of indices."""

    def __init__(self, pool, gen):
        self.pool, self.gen, self.order, self.pos = pool, gen, None, len(pool)

    def next(self, count):
        out, have = [], 0
        while have < count:
            if self.pos >= len(self.pool):
                self.order = self.pool[torch.randperm(len(self.pool), generator=self.gen)]
                self.pos = 0
            take = min(count - have, len(self.pool) - self.pos)
            out.append(self.order[self.pos:self.pos + take])
            self.pos += take
            have += take
        return torch.cat(out)


@torch.no_grad()
def accuracy(model, x, y):
    correct = 0
    for i in range(0, len(x), 1000):
        correct += (model(x[i:i + 1000]).argmax(1) == y[i:i + 1000]).sum().item()
    return correct / len(x)


def run(method, args, data):
    x_train, y_train, x_test, y_test, labeled, unlabeled, background = data
    torch.manual_seed(args.seed * 1000 + 10)
    model = Net()
    ema = [p.detach().clone() for p in model.parameters()]
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True,
                          weight_decay=args.weight_decay)
    gen = torch.Generator().manual_seed(args.seed * 1000 + 20)
    lab, unl = Sampler(labeled, gen), Sampler(unlabeled, gen)
    B, U = args.batch, args.batch * args.mu
    used = right = 0
    classes = int(y_train.max()) + 1
    p_model, p_target = None, torch.full((classes,), 1.0 / classes)
    t0 = time.time()
    for k in range(args.steps):
        for g in opt.param_groups:
            g["lr"] = args.lr * math.cos(7 * math.pi * k / (16 * args.steps))
        li = lab.next(B)
        xb = augment(x_train[li], False, background, gen)
        if method in ("fixmatch", "adamatch"):
            ui = unl.next(U)
            xu = x_train[ui]
            xw = augment(xu, False, background, gen)
            xs = augment(xu, True, background, gen)
            with torch.no_grad():
                pw = F.softmax(model(xw), dim=1)
            logits = model(torch.cat([xb, xs]))
            cut = args.threshold
            with torch.no_grad():
                if method == "adamatch":
                    m = args.da_momentum
                    plb = F.softmax(logits[:B].detach(), dim=1)
                    p_model = pw.mean(0) if p_model is None else p_model * m + pw.mean(0) * (1 - m)
                    p_target = p_target * m + plb.mean(0) * (1 - m)
                    pw = pw * (p_target + 1e-6) / (p_model + 1e-6)
                    pw = pw / pw.sum(dim=1, keepdim=True)
                    cut = plb.max(dim=1)[0].mean() * args.threshold
                conf, pred = pw.max(dim=1)
                mask = (conf >= cut).float()
            loss = F.cross_entropy(logits[:B], y_train[li]) + args.unlabeled_weight * (
                F.cross_entropy(logits[B:], pred, reduction="none") * mask).mean()
            used += int(mask.sum().item())
            right += int(((pred == y_train[ui]).float() * mask).sum().item())
        else:
            loss = F.cross_entropy(model(xb), y_train[li])
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            a = min(args.ema_decay, 1.0 - 1.0 / (k + 1))
            for e, p in zip(ema, model.parameters()):
                e.mul_(a).add_(p.detach(), alpha=1.0 - a)
        if (k + 1) % args.eval_every == 0 or k + 1 == args.steps:
            print(f"{method:10s} step {k + 1:5d}  loss {loss.item():.4f}  "
                  f"test {100 * accuracy(model, x_test, y_test):.2f}%  {time.time() - t0:.0f} s",
                  flush=True)
    model_acc = accuracy(model, x_test, y_test)
    with torch.no_grad():
        for e, p in zip(ema, model.parameters()):
            p.copy_(e)
    ema_acc = accuracy(model, x_test, y_test)
    share = used / (U * args.steps) if method != "supervised" else None
    return model_acc, ema_acc, share, (right / used if used else None), time.time() - t0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--methods", default="supervised,fixmatch")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--eval-every", type=int, default=1000)
    ap.add_argument("--labeled", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--mu", type=int, default=3)
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--weight-decay", type=float, default=5e-4)
    ap.add_argument("--threshold", type=float, default=0.95)
    ap.add_argument("--unlabeled-weight", type=float, default=1.0)
    ap.add_argument("--ema-decay", type=float, default=0.999)
    ap.add_argument("--da-momentum", type=float, default=0.999,
                    help="AdaMatch: EMA momentum of p_model and p_target (USB's ema_p)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    methods = args.methods.split(",")
    for m in methods:
        if m not in ("supervised", "fixmatch", "adamatch"):
            ap.error(f"unknown method {m!r} (supervised, fixmatch, adamatch)")

    x_train, y_train = load_split(args.data, "train")
    x_test, y_test = load_split(args.data, "t10k")
    mean, std = float(x_train.mean()), float(x_train.std())
    x_train = torch.from_numpy((x_train - mean) / std).unsqueeze(1)
    x_test = torch.from_numpy((x_test - mean) / std).unsqueeze(1)
    y_train, y_test = torch.from_numpy(y_train), torch.from_numpy(y_test)
    background = -mean / std
    # Class-balanced labelled set.
    rng = np.random.default_rng(args.seed)
    per_class = args.labeled // 10
    labeled = np.concatenate([rng.permutation(np.flatnonzero(y_train.numpy() == c))[:per_class]
                              for c in range(10)])
    unlabeled = np.setdiff1d(np.arange(len(y_train)), labeled)
    data = (x_train, y_train, x_test, y_test, torch.from_numpy(labeled),
            torch.from_numpy(unlabeled), background)
    print(f"pseudolabel_torch: torch {torch.__version__}, {torch.get_num_threads()} thread(s), "
          f"{len(labeled)} labelled, {len(unlabeled)} unlabelled, {args.steps} steps, "
          f"seed {args.seed}", flush=True)
    results = [(m, run(m, args, data)) for m in methods]
    print(f"\n== pseudolabel_torch results (test accuracy on {len(y_test)} images, seed "
          f"{args.seed}, {args.steps} steps, batch {args.batch} + {args.batch * args.mu} "
          f"unlabelled, tau = {args.threshold})")
    print(f"{'method':12s} {'model':>8s} {'EMA':>8s} {'unlabelled used':>16s} "
          f"{'their accuracy':>15s} {'time':>7s}")
    for m, (ma, ea, share, acc, sec) in results:
        s = f"{100 * share:15.1f}%" if share is not None else f"{'-':>16s}"
        a = f"{100 * acc:14.1f}%" if acc is not None else f"{'-':>15s}"
        print(f"{m:12s} {100 * ma:7.2f}% {100 * ea:7.2f}% {s} {a} {sec:6.0f}s")


if __name__ == "__main__":
    main()
