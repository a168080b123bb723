#!/usr/bin/env python3
"""Write tests/data/cleanlab_fixtures.txt: golden outputs of the real cleanlab
for tests/test_cleanlab.c.

Run with a cleanlab 2.x checkout on PYTHONPATH (it needs numpy,
scikit-learn, pandas, tqdm and termcolor; CI does not run this script):

    git -C <cleanlab checkout> archive HEAD cleanlab | tar x -C /tmp/cl
    PYTHONPATH=/tmp/cl /usr/bin/python3 tests/data/cleanlab_make_fixtures.py

The fixture of 2026-12-03 was written by cleanlab 2.9.0 (commit 75062574)
with NumPy 1.24.2.  Inputs are float32 values, passed to cleanlab as float64
(kdlib computes in double on float32 inputs).  Every call is also run with
np.argsort made stable; a result that changes (cleanlab's quicksort broke a
tie of more than 16 keys differently) is left out and reported on stderr, so
that the fixture holds only results that do not depend on NumPy's unstable
sort (docs/labels.md, deviations).

Format: one record per line, "key value ...", a case between "case NAME n c"
and "end"; the keys are read by load_cases() in tests/test_cleanlab.c.
"""
import sys
import warnings

import numpy as np

import cleanlab
from cleanlab import count, filter as clfilter, rank

warnings.filterwarnings("ignore")
_argsort = np.argsort
FILTERS = ["prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
           "predicted_neq_given", "low_normalized_margin", "low_self_confidence"]
SCORES = ["self_confidence", "normalized_margin", None, "confidence_weighted_entropy"]


def stable(fn):
    """fn() with np.argsort stable, and fn() as is: (result, same?)."""
    a = fn()
    np.argsort = lambda x, axis=-1, kind=None, order=None: _argsort(x, axis, "stable", order)
    try:
        b = fn()
    finally:
        np.argsort = _argsort
    same = all(np.array_equal(np.asarray(u), np.asarray(v)) for u, v in zip(
        a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,)))
    return a, same


def fmt(values):
    return " ".join(repr(float(v)) if isinstance(v, (float, np.floating)) else str(int(v))
                    for v in np.asarray(values).ravel())


def softmax_probs(rng, n, c, scale):
    z = rng.normal(0.0, scale, (n, c))
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def noisy_labels(rng, p, noise):
    n, c = p.shape
    y = np.array([rng.choice(c, p=row / row.sum()) for row in p.astype(np.float64)])
    flip = rng.random(n) < noise
    y[flip] = rng.integers(0, c, flip.sum())
    return y


def make_cases():
    rng = np.random.default_rng(20261203)
    cases = []
    for name, n, c, scale, noise in [("rand_n200_c3", 200, 3, 2.0, 0.2),
                                     ("rand_n500_c5", 500, 5, 2.5, 0.25),
                                     ("rand_n1000_c10", 1000, 10, 3.0, 0.3),
                                     ("rand_n100_c2", 100, 2, 2.0, 0.2),
                                     ("rand_n3000_c4", 3000, 4, 1.5, 0.4),
                                     ("rand_n60_c7_flat", 60, 7, 0.5, 0.5),
                                     ("rand_n300_c6_sharp", 300, 6, 6.0, 0.15)]:
        p = softmax_probs(rng, n, c, scale)
        cases.append((name, p, noisy_labels(rng, p, noise)))
    # n = 1 (cleanlab accepts a single class only when it is class 0)
    cases.append(("n1_c3", np.array([[0.2, 0.5, 0.3]], np.float32), np.array([0])))
    # two classes, few rows
    cases.append(("n4_c2", np.array([[0.9, 0.1], [0.4, 0.6], [0.3, 0.7], [0.55, 0.45]],
                                    np.float32), np.array([0, 0, 1, 1])))
    # ties everywhere: probabilities on a 0.25 grid, <= 16 rows per class
    grid = np.array([[1, 0, 0], [0.5, 0.5, 0], [0.5, 0.25, 0.25], [0.25, 0.5, 0.25],
                     [0.25, 0.25, 0.5], [0, 0.5, 0.5], [0, 0, 1], [0, 1, 0],
                     [0.5, 0, 0.5], [0.25, 0.75, 0]], np.float32)
    idx = rng.integers(0, len(grid), 36)
    cases.append(("ties_grid_n36_c3", grid[idx], rng.integers(0, 3, 36)))
    # the same with n <= 16, where NumPy's argsort is stable (every filter and
    # ranking then depends on the tie rule, and the fixture keeps them all)
    idx = rng.integers(0, len(grid), 16)
    cases.append(("ties_grid_n16_c3", grid[idx], rng.integers(0, 3, 16)))
    oh = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 14)]
    cases.append(("onehot_n14_c4", oh, rng.integers(0, 4, 14)))
    # uniform probabilities: every comparison ties
    cases.append(("uniform_n12_c4", np.full((12, 4), 0.25, np.float32),
                  np.array([0, 1, 2, 3, 0, 1, 2, 3, 0, 0, 1, 2])))
    # one-hot predictions (entropy 0), some disagreeing with the labels
    oh = np.eye(4, dtype=np.float32)[rng.integers(0, 4, 30)]
    cases.append(("onehot_n30_c4", oh, rng.integers(0, 4, 30)))
    # empty classes: c = 6, labels only in {0, 1, 3}
    p = softmax_probs(rng, 80, 6, 2.0)
    cases.append(("empty_classes_n80_c6", p, rng.choice([0, 1, 3], 80)))
    # class 2 never confidently counted: its rows are confident in 0 and 2,
    # argmax 0 (a low threshold for class 0)
    rows, ys = [], []
    for _ in range(10):
        rows.append([0.35, 0.6, 0.05]); ys.append(0)       # class 0: t0 ~ 0.35
    for _ in range(10):
        rows.append([0.1, 0.8, 0.1]); ys.append(1)
    for _ in range(8):
        rows.append([0.5, 0.1, 0.4]); ys.append(2)          # confident in 0 and 2
    rows.append([0.05, 0.05, 0.9]); ys.append(1)
    p = np.array(rows, np.float32) + rng.uniform(0, 1e-3, (len(rows), 3)).astype(np.float32)
    p = (p / p.sum(axis=1, keepdims=True)).astype(np.float32)
    cases.append(("no_confident_class2_n29_c3", p, np.array(ys)))
    # near-threshold values: p within 1e-6 of the class mean
    base = np.array([[0.6, 0.4], [0.6, 0.4], [0.4, 0.6], [0.4, 0.6], [0.5999995, 0.4000005],
                     [0.4000005, 0.5999995]], np.float32)
    cases.append(("near_threshold_n6_c2", base, np.array([0, 0, 1, 1, 1, 0])))
    # 10 classes, small: many classes with 0 or 1 rows
    p = softmax_probs(rng, 15, 10, 2.0)
    cases.append(("sparse_n15_c10", p, rng.integers(0, 10, 15)))
    # rows that do not sum to 1 (cleanlab and kdlib accept them as they are):
    # softmax rows scaled by factors in [0.3, 1]
    p = softmax_probs(rng, 120, 3, 2.0)
    p = (p * rng.uniform(0.3, 1.0, (120, 1))).astype(np.float32)
    cases.append(("unnormalized_n120_c3", p, noisy_labels(rng, p, 0.25)))
    return cases


def write_case(out, name, p32, y):
    n, c = p32.shape
    p = p32.astype(np.float64)
    y = np.asarray(y, dtype=np.int64)
    skipped = []
    out.write("case %s %d %d\n" % (name, n, c))
    out.write("labels %s\n" % fmt(y))
    out.write("probs %s\n" % fmt(p))
    out.write("thresholds %s\n" % fmt(count.get_confident_thresholds(y, p)))
    for cal in (0, 1):
        cj, off = count.compute_confident_joint(y, p, calibrate=bool(cal),
                                                return_indices_of_off_diagonals=True)
        out.write("cj %d %s\n" % (cal, fmt(cj)))
    out.write("offdiag %d %s\n" % (len(off), fmt(off)))
    out.write("joint %s\n" % fmt(count.estimate_joint(y, p)))
    custom = rng_custom.integers(0, 20, (c, c))
    out.write("customjoint %s %s\n" % (fmt(custom), fmt(count.estimate_joint(
        y, p, confident_joint=custom))))
    for flags, (cal, conv) in ((0, (False, False)), (1, (True, False)), (2, (False, True)),
                               (3, (True, True))):
        py, nm, inv, cj = count.estimate_py_and_noise_matrices_from_probabilities(
            y, p, converge_latent_estimates=conv, calibrate=cal)
        out.write("latent %d %s %s %s %s\n" % (flags, fmt(py), fmt(nm), fmt(inv), fmt(cj)))
    one_class = len(set(y.tolist())) < 2  # num_label_issues rejects it (ValueError)
    for m, method in enumerate(["off_diagonal", "off_diagonal_calibrated"]):
        if one_class:
            skipped.append("num_label_issues (cleanlab: at least 2 classes)")
            continue
        out.write("numissues %d %d\n" % (m, count.num_label_issues(y, p,
                                                                  estimation_method=method)))
    if not one_class:
        out.write("numcustom %s %d\n" % (fmt(custom), count.num_label_issues(
            y, p, confident_joint=custom, estimation_method="off_diagonal_custom")))
    for m, method in enumerate(SCORES):
        if method is None:
            continue
        for adj in ((0, 1) if m != 3 else (0,)):
            if m == 3 and c < 2:
                continue
            s = rank.get_label_quality_scores(y, p, method=method, adjust_pred_probs=bool(adj))
            out.write("scores %d %d %s\n" % (m, adj, fmt(s)))
    settings = [(1.0, 1, None), (0.5, 1, None), (1.0, 0, None), (1.0, 5, None),
                (0.7, 2, None), (1.0, 1, "ones"), (1.0, 1, "rand"), (0.0, 1, None),
                (1.0, 1000, None)]
    for f, fb in enumerate(FILTERS):
        prune = f <= 2
        for frac, mn, ntr_kind in (settings if prune else [(1.0, 1, None), (1.0, 3, None)]):
            ntr = None
            if ntr_kind == "ones":
                ntr = [1] * c
            elif ntr_kind == "rand":
                ntr = [int(v) for v in rng_custom.integers(0, max(2, n // (2 * c)), c)]
            for rank_by, adj in [(None, 0), ("self_confidence", 0), ("normalized_margin", 1),
                                 ("confidence_weighted_entropy", 0)]:
                if rank_by is not None and (frac, mn, ntr_kind) != (1.0, 1, None):
                    continue
                if rank_by == "confidence_weighted_entropy" and c < 2:
                    continue
                kw = dict(filter_by=fb, frac_noise=frac, num_to_remove_per_class=ntr,
                          min_examples_per_class=mn, n_jobs=1)
                if rank_by is not None:
                    kw.update(return_indices_ranked_by=rank_by,
                              rank_by_kwargs={"adjust_pred_probs": bool(adj)})
                key = "%s frac=%g min=%d ntr=%s rank=%s" % (fb, frac, mn, ntr, rank_by)
                try:
                    res, same = stable(lambda: clfilter.find_label_issues(y, p, **kw))
                except ValueError as e:
                    skipped.append("%s (cleanlab: %s)" % (key, e))
                    continue
                if not same:
                    skipped.append(key + " (depends on NumPy's unstable argsort)")
                    continue
                res = np.asarray(res)
                idx = np.flatnonzero(res) if rank_by is None else res
                rk = -1 if rank_by is None else SCORES.index(rank_by)
                out.write("issues %d %r %d %s %d %d %d %s\n" % (
                    f, frac, mn, ("1 " + fmt(ntr)) if ntr is not None else "0", rk, adj,
                    len(idx), fmt(idx)))
    out.write("end\n")
    for key in skipped:
        sys.stderr.write("%s: left out: %s\n" % (name, key))


if __name__ == "__main__":
    rng_custom = np.random.default_rng(7)
    path = sys.argv[1] if len(sys.argv) > 1 else "tests/data/cleanlab_fixtures.txt"
    with open(path, "w") as out:
        out.write("# cleanlab %s, NumPy %s: written by tests/data/cleanlab_make_fixtures.py\n"
                  % (cleanlab.__version__, np.__version__))
        for name, p, y in make_cases():
            write_case(out, name, p, y)
