#!/usr/bin/env python3
"""kd-noisy's experiment in PyTorch, for comparison with examples/kd_noisy.c.

On the first --subset (20,000) Fashion-MNIST training images, for each noise
level (25% and 40%): flip that share of the labels to another class
(symmetric noise); train --folds (4) conv16-conv32-fc64 models on k-1 folds
for --epochs (10) to get out-of-fold probabilities (averaged over --tta 2: 10
test-time views, as kd-noisy); run cleanlab's filters
(cleanlab itself when it can be imported, else kdlib's C port through the
Python binding; both when both are there, and their issue sets are compared)
and the self-confidence top-K against the known flips; compare cleanlab's
noise-matrix estimate with the true one; then retrain for --final-epochs (10)
on the noisy hard labels, on soft labels 0.7 onehot(given) + 0.3
onehot(predicted), on soft labels for the suspects only (cleanlab's default
filter, prune_by_noise_rate), without the suspects, with the suspects
relabelled to the prediction, and (once) on the true labels.

Training as in kd-noisy: SGD (momentum 0.9, weight decay 5e-4), lr 0.03 with a
cosine decay per step, batch 64, random shifts of up to 2 pixels and
horizontal flips; one thread (torch.set_num_threads(--threads)).

Run from a source tree with
    KDLIB_LIBRARY=build/src/libkd.so PYTHONPATH=bindings/python \\
        python3 examples/python/noisy_torch.py --noise 0.25 --seed 1
(add cleanlab's directory to PYTHONPATH to use cleanlab itself).
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from distill_torch import accuracy, cnn, load  # noqa: E402  (same directory)
import kdlib  # noqa: E402  (distill_torch put bindings/python on the path if needed)

try:
    import cleanlab.count
    import cleanlab.filter
    HAVE_CLEANLAB = True
except ImportError:
    HAVE_CLEANLAB = False

FILTERS = ["prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
           "predicted_neq_given", "low_normalized_margin", "low_self_confidence"]
RETRAIN = ["hard", "soft", "soft-suspects", "dropped", "relabelled"]


def augment(x, background, gen):
    """Weak augmentation: shift by up to 2 pixels (background fill), flip with p = 0.5."""
    n = x.shape[0]
    padded = F.pad(x, (2, 2, 2, 2), value=background)
    shifts = torch.randint(0, 5, (n, 2), generator=gen)
    out = torch.empty_like(x)
    for i in range(n):
        dy, dx = int(shifts[i, 0]), int(shifts[i, 1])
        out[i] = padded[i, :, dy:dy + 28, dx:dx + 28]
    flip = torch.rand(n, generator=gen) < 0.5
    out[flip] = out[flip].flip(3)
    return out


def train(x, targets, rows, args, seed, test):
    """A model trained on x[rows] with hard labels (int64 vector) or soft
    targets (n x 10 float matrix), indexed by dataset row."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = cnn(16, 32, 64)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    steps_per_epoch = (len(rows) + args.batch - 1) // args.batch
    total = args.final_epochs_now * steps_per_epoch
    background = float(x.min())
    rows = torch.as_tensor(rows)
    step = 0
    for _ in range(args.final_epochs_now):
        perm = rows[torch.randperm(len(rows), generator=gen)]
        for b in range(0, len(perm), args.batch):
            idx = perm[b:b + args.batch]
            for g in opt.param_groups:
                g["lr"] = 0.5 * args.lr * (1 + math.cos(math.pi * step / total))
            logits = model(augment(x[idx], background, gen))
            t = targets[idx]
            if t.dtype == torch.int64:
                loss = F.cross_entropy(logits, t)
            else:
                loss = -(t * F.log_softmax(logits, 1)).sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    return model, accuracy(model, *test)


def views(x, background, tta):
    """The test-time views of kd-noisy's --tta: 0 the images, 1 and their
    mirror images, 2 and both shifted by one pixel in 4 directions (10)."""
    out = [x]
    if tta >= 1:
        out.append(x.flip(3))
    if tta >= 2:
        padded = F.pad(x, (1, 1, 1, 1), value=background)
        for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):   # moved down, up, right, left
            shifted = padded[:, :, 1 - dy:29 - dy, 1 - dx:29 - dx]
            out += [shifted, shifted.flip(3)]
    return out


@torch.no_grad()
def probabilities(model, x, batch=1000, tta=0, background=0.0):
    """Softmax outputs, averaged over the test-time views (views())."""
    model.eval()
    total = 0
    for v in views(x, background, tta):
        total = total + torch.cat([F.softmax(model(v[i:i + batch]), 1)
                                   for i in range(0, len(v), batch)])
    return total / (1 + (tta >= 1) + 8 * (tta >= 2))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--subset", type=int, default=20000)
    ap.add_argument("--noise", default="0.25,0.4")
    ap.add_argument("--folds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--final-epochs", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.03)
    ap.add_argument("--label-weight", type=float, default=0.7)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--limit-test", type=int, default=0)
    ap.add_argument("--retrain", default=",".join(RETRAIN),
                    help="comma-separated retraining runs (kd-noisy's --retrain; '' = none)")
    ap.add_argument("--true-labels", type=int, default=1, choices=(0, 1),
                    help="1: also train once on the true labels (the ceiling)")
    ap.add_argument("--tta", type=int, default=2, choices=(0, 1, 2),
                    help="test-time views of the out-of-fold predictions (kd-noisy's --tta)")
    args = ap.parse_args()
    retrain = [r for r in args.retrain.split(",") if r]
    unknown = sorted(set(retrain) - set(RETRAIN))
    if unknown:
        ap.error("--retrain: unknown runs %s (expected names among %s)"
                 % (", ".join(unknown), ", ".join(RETRAIN)))
    torch.set_num_threads(args.threads)
    t0 = time.time()
    xtr, ytr, xte, yte = load(args.data)
    xtr, ytr = xtr[:args.subset], ytr[:args.subset]
    if args.limit_test:
        xte, yte = xte[:args.limit_test], yte[:args.limit_test]
    n, C = len(ytr), 10
    print("noisy_torch: torch %s, %s, %d train / %d test images, seed %d"
          % (torch.__version__, "cleanlab %s" % cleanlab.__version__ if HAVE_CLEANLAB
             else "no cleanlab: kdlib's filters", n, len(xte), args.seed))
    true_acc = None
    for level, noise in enumerate(float(s) for s in args.noise.split(",")):
        rng = np.random.default_rng([args.seed, level])
        y = ytr.numpy().copy()
        order = rng.permutation(n)
        flip_rows = order[:int(round(noise * n))]
        y[flip_rows] = (y[flip_rows] + 1 + rng.integers(0, C - 1, len(flip_rows))) % C
        flipped = y != ytr.numpy()
        noisy = torch.from_numpy(y)
        folds = rng.permutation(n) % args.folds
        probs = np.zeros((n, C), np.float32)
        args.final_epochs_now = args.epochs
        for f in range(args.folds):
            model, acc = train(xtr, noisy, np.flatnonzero(folds != f), args,
                               args.seed * 100 + f, (xte, yte))
            held = np.flatnonzero(folds == f)
            probs[held] = probabilities(model, xtr[held], tta=args.tta,
                                        background=float(xtr.min())).numpy()
            print("  noise %.0f%% fold %d: test accuracy %.2f%% (%.0f s)"
                  % (100 * noise, f + 1, 100 * acc, time.time() - t0), flush=True)
        pred = probs.argmax(1)
        print("\n== noise %.0f%%: %d labels flipped; out-of-fold accuracy %.2f%% against the "
              "true labels" % (100 * noise, flipped.sum(), 100 * (pred == ytr.numpy()).mean()))
        print("%-26s %8s %10s %8s" % ("filter", "issues", "precision", "recall"))
        k = int(flipped.sum())
        topk = np.argsort(probs[np.arange(n), y], kind="stable")[:k]
        print("%-26s %8d %9.1f%% %7.1f%%" % ("self-confidence top-K", k,
                                             100 * flipped[topk].mean(), 100 * flipped[topk].mean()))
        masks = {}
        for name in FILTERS:
            if HAVE_CLEANLAB:
                mask = cleanlab.filter.find_label_issues(y, probs, filter_by=name)
                same = np.array_equal(mask, kdlib.find_label_issues(y, probs, filter_by=name))
            else:
                mask = np.asarray(kdlib.find_label_issues(y, probs, filter_by=name), bool)
                same = None
            masks[name] = mask
            hits = int((mask & flipped).sum())
            print("%-26s %8d %9.1f%% %7.1f%%%s" % (
                name, mask.sum(), 100 * hits / max(mask.sum(), 1), 100 * hits / max(k, 1),
                "" if same is None else "  (kdlib: %s)" % ("same issues" if same else "DIFFERENT")))
        if HAVE_CLEANLAB:
            _, nm, _, _ = cleanlab.count.estimate_py_and_noise_matrices_from_probabilities(y, probs)
        else:
            _, nm, _, _ = kdlib.estimate_py_and_noise_matrices_from_probabilities(y, probs)
        true_nm = np.zeros((C, C))
        np.add.at(true_nm, (y, ytr.numpy()), 1)
        true_nm /= true_nm.sum(0, keepdims=True)
        print("noise matrix P(given i | true j), max |estimate - true| %.4f; diagonal:"
              % np.abs(nm - true_nm).max())
        print("  estimate: " + " ".join("%.3f" % v for v in np.diag(nm)))
        print("  true:     " + " ".join("%.3f" % v for v in np.diag(true_nm)), flush=True)

        suspects = masks["prune_by_noise_rate"]
        onehot = F.one_hot(noisy, C).float()
        onehot_pred = F.one_hot(torch.from_numpy(pred), C).float()
        w = args.label_weight
        soft = w * onehot + (1 - w) * onehot_pred
        soft_sel = torch.where(torch.from_numpy(suspects)[:, None], soft, onehot)
        relabelled = torch.where(torch.from_numpy(suspects), torch.from_numpy(pred), noisy)
        all_rows = np.arange(n)
        runs = {"hard": (noisy, all_rows), "soft": (soft, all_rows),
                "soft-suspects": (soft_sel, all_rows),
                "dropped": (noisy, np.flatnonzero(~suspects)),
                "relabelled": (relabelled, all_rows)}
        runs = {name: run for name, run in runs.items() if name in retrain}
        if true_acc is None and args.true_labels:
            runs["true labels"] = (ytr, all_rows)
        args.final_epochs_now = args.final_epochs
        print("\n== noise %.0f%%: retrained %d epochs (suspects: prune_by_noise_rate, %d), test "
              "accuracy" % (100 * noise, args.final_epochs, suspects.sum()))
        for name, (targets, rows) in runs.items():
            _, acc = train(xtr, targets, rows, args, args.seed * 100 + 50, (xte, yte))
            if name == "true labels":
                true_acc = acc
            print("  %-28s %6.2f%%  (%.0f s)" % (name, 100 * acc, time.time() - t0), flush=True)
        if "true labels" not in runs and true_acc is not None:
            print("  %-28s %6.2f%%  (trained once)" % ("true labels", 100 * true_acc))
    print("total time %.0f s" % (time.time() - t0))


if __name__ == "__main__":
    main()
