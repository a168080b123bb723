#!/usr/bin/env python3
"""Data-parallel kdlib on a real engine: torch.distributed, gloo backend, two
processes on this machine (CTest: python_data_parallel).

Two ranks started as scripts (subprocess), the process group initialised
through a file:// store in a temporary directory with a 60 s timeout; the
parent kills both after 120 s, so a hang fails instead of blocking CI.  Each
rank gets an uneven shard (15 / 22 rows; one step gives rank 0 no row) and
the results must equal one process over the whole batch:

  - class balance (logits and probabilities) and MCC through
    kdlib.torch_split_batch_loss (kd_loss_local_stats -> all_reduce SUM ->
    kd_loss_finish): the same loss on both ranks and, concatenated, the
    gradient rows of the whole batch (float32 rounding of reordered sums);
  - the split threshold statistics (Thresholds.local_stats -> all_reduce SUM
    -> update_stats) of FreeMatch, SoftMatch without alignment, AdaMatch (with
    its labelled rows), Dash and DebiasPL: the states within 1e-6 of one
    process (reordered double sums), masks and pseudo-labels equal;
  - the threshold states (kdlib.Thresholds FlexMatch, FreeMatch with mean and
    quantile, SoftMatch) through kdlib.torch_threshold_update (all-gather of
    the rows in rank order) and the module kdlib.torch.FreeMatchThreshold
    with process_group=: every state array and every weight bit-identical,
    over three steps; a rank updating with its own shard only differs (the
    control that shows the test can fail).

Exit code 77 (CTest SKIP_RETURN_CODE) with a message when NumPy, PyTorch,
torch.distributed or its gloo backend is missing.
"""
import datetime
import os
import subprocess
import sys
import tempfile
import unittest

try:
    import numpy as np
    import torch
    import torch.distributed as dist
except ImportError as exc:  # pragma: no cover - depends on the machine
    print("skipping the data-parallel test: %s" % exc)
    sys.exit(77)

import kdlib  # noqa: E402  (PYTHONPATH=bindings/python, KDLIB_LIBRARY set by CTest)

WORLD = 2
N, C, ROWS, STEPS = 100, 6, 37, 3
LOSS_CUTS = (0, 15, ROWS)
STEP_CUTS = [(0, 15, ROWS), (0, 0, ROWS), (0, 30, ROWS)]
LOSSES = [("cb_logits", "class_balance", "logits"),
          ("cb_probs", "class_balance", "probabilities"),
          ("mcc", "mcc", "logits")]
THRESHOLDS = [("flexmatch", {"threshold": 0.5, "warmup": True}),
              ("freematch", {"momentum": 0.9}),
              ("freematch_q", {"momentum": 0.9, "use_quantile": True}),
              ("softmatch", {"momentum": 0.9}),
              ("dash", {"rho_init": 1.0, "rho_min": 0.3, "period": 1, "gamma": 1.5}),
              ("debiaspl", {"momentum": 0.9, "threshold": 0.7})]
STATES = ["global_threshold", "class_probs", "label_histogram", "conf_mean", "conf_var",
          "class_conf_mean", "class_conf_var", "updates", "rho", "rho_updates", "hard_label",
          "target_probs", "labeled_confidence", "labeled_updates"]
# split statistics (Thresholds.local_stats -> all_reduce SUM -> update_stats)
SPLITS = [("freematch", {"momentum": 0.9}), ("softmatch_na", {"dist_align": 0, "momentum": 0.8}),
          ("adamatch", {"threshold": 0.8, "momentum": 0.5}), ("dash", {"period": 2}),
          ("debiaspl", {"momentum": 0.7})]


def data():
    rng = np.random.default_rng(20)
    logits = (rng.standard_normal((STEPS, ROWS, C)) * 2.5).astype(np.float32)
    e = np.exp(logits - logits.max(-1, keepdims=True))
    probs = (e / e.sum(-1, keepdims=True)).astype(np.float32)
    indices = np.stack([rng.permutation(N)[:ROWS] for _ in range(STEPS)]).astype(np.int64)
    return logits, probs, indices


def algorithm(name):
    return name.split("_")[0]


def snapshot(th, out, prefix):
    """Every state array the algorithm has, into out[prefix + name]."""
    for name in STATES:
        try:
            out[prefix + name] = np.atleast_1d(np.asarray(th.state(name)))
        except kdlib.KdUnsupportedError:
            pass
    if th.algorithm in ("flexmatch", "freematch"):
        out[prefix + "thresholds"] = th.thresholds()
    if th.algorithm == "flexmatch":
        out[prefix + "learning_effect"] = th.learning_effect()
        out[prefix + "counts"] = th.counts()[0]
        out[prefix + "predictions"] = th.predictions()


def run_thresholds(out, shard, update, configs=THRESHOLDS, prefix=""):
    """Three steps of every algorithm of configs: update(th, rows, step, lo,
    hi) (whole batch, gathered or all-reduced), then the weights of this
    process's rows (USB's order), then the state."""
    _, probs, _ = data()
    for name, params in configs:
        th = kdlib.Thresholds(algorithm(name), N, C, **params)
        for s in range(STEPS):
            lo, hi = shard(s)
            p = np.ascontiguousarray(probs[s, lo:hi])
            update(th, p, s, lo, hi)
            w, pl = th.weights_probs(p)
            out["%s%s_w%d" % (prefix, name, s)] = w
            out["%s%s_pl%d" % (prefix, name, s)] = pl
        snapshot(th, out, prefix + name + "_")
        th.close()


def labeled_rows(th, s, lo, hi):
    """AdaMatch's labelled rows of step s (the next step's rows), else None."""
    if th.algorithm != "adamatch":
        return None
    return np.ascontiguousarray(data()[1][(s + 1) % STEPS, lo:hi])


def whole_update(th, p, s, lo, hi):
    lab = labeled_rows(th, s, lo, hi)
    if lab is not None:
        th.update_labeled_probs(lab)
    th.update_probs(p)


def all_reduce_update(th, p, s, lo, hi):
    t = torch.from_numpy(th.local_stats(p, labeled=labeled_rows(th, s, lo, hi)))
    dist.all_reduce(t)  # SUM, float64
    th.update_stats(t.numpy())


def rank_main(rank, init_file, out_dir):
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank,
                            world_size=WORLD, timeout=datetime.timedelta(seconds=60))
    logits, probs, indices = data()
    out = {}
    lo, hi = LOSS_CUTS[rank], LOSS_CUTS[rank + 1]
    for name, kind, inputs in LOSSES:
        x = probs[0] if inputs == "probabilities" else logits[0]
        z = torch.tensor(x[lo:hi], requires_grad=True)
        loss = kdlib.torch_split_batch_loss(kind, z, inputs=inputs, grad_scale=1.0)
        loss.backward()
        out[name + "_loss"] = np.array([loss.item()])
        out[name + "_grad"] = z.grad.numpy()

    def shard(s):
        return STEP_CUTS[s][rank], STEP_CUTS[s][rank + 1]

    run_thresholds(out, shard, lambda th, p, s, lo, hi: kdlib.torch_threshold_update(
        th, torch.from_numpy(p), indices[s, lo:hi]))
    run_thresholds(out, shard, all_reduce_update, SPLITS, "split_")
    # the module over the same engine
    import kdlib.torch as kdt
    m = kdt.FreeMatchThreshold(C, momentum=0.9, process_group=dist.group.WORLD)
    for s in range(STEPS):
        a, b = shard(s)
        r = m(torch.from_numpy(probs[s, a:b]), inputs="probabilities")
        out["module_w%d" % s] = r.mask.numpy()
    out["module_tau"] = m.thresholds.numpy()
    # AdaMatch: the labelled rows are gathered too
    ada = kdt.AdaMatchThreshold(C, threshold=0.8, momentum=0.5, process_group=dist.group.WORLD)
    for s in range(STEPS):
        a, b = shard(s)
        r = ada(torch.from_numpy(probs[s, a:b]), torch.from_numpy(probs[(s + 1) % STEPS, a:b]),
                inputs="probabilities")
        out["ada_w%d" % s], out["ada_pl%d" % s] = r.mask.numpy(), r.pseudo_labels.numpy()
    out["ada_target"] = ada.state("target_probs").numpy()
    np.savez(os.path.join(out_dir, "rank%d.npz" % rank), **out)
    dist.barrier()
    dist.destroy_process_group()


def single_process():
    logits, probs, indices = data()
    ref = {}
    import kdlib.torch as kdt
    for name, kind, inputs in LOSSES:
        x = probs[0] if inputs == "probabilities" else logits[0]
        z = torch.tensor(x, requires_grad=True)
        loss = kdt.class_balance(z, inputs=inputs) if kind == "class_balance" else kdt.mcc(z)
        loss.backward()
        ref[name + "_loss"] = loss.item()
        ref[name + "_grad"] = z.grad.numpy()
    run_thresholds(ref, lambda s: (0, ROWS),
                   lambda th, p, s, lo, hi: th.update_probs(p, indices[s, lo:hi]))
    run_thresholds(ref, lambda s: (0, ROWS), whole_update, SPLITS, "split_")
    m = kdt.FreeMatchThreshold(C, momentum=0.9)
    for s in range(STEPS):
        ref["module_w%d" % s] = m(torch.from_numpy(probs[s]), inputs="probabilities").mask.numpy()
    ref["module_tau"] = m.thresholds.numpy()
    ada = kdt.AdaMatchThreshold(C, threshold=0.8, momentum=0.5)
    for s in range(STEPS):
        r = ada(torch.from_numpy(probs[s]), torch.from_numpy(probs[(s + 1) % STEPS]),
                inputs="probabilities")
        ref["ada_w%d" % s], ref["ada_pl%d" % s] = r.mask.numpy(), r.pseudo_labels.numpy()
    ref["ada_target"] = ada.state("target_probs").numpy()
    return ref


class TwoGlooRanks(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ref = single_process()
        with tempfile.TemporaryDirectory() as d:
            env = dict(os.environ)
            top = os.path.dirname(os.path.dirname(os.path.abspath(kdlib.__file__)))
            env["PYTHONPATH"] = os.pathsep.join([top, env.get("PYTHONPATH", "")])
            procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--rank",
                                       str(r), os.path.join(d, "init"), d], env=env)
                     for r in range(WORLD)]
            try:
                codes = [p.wait(timeout=120) for p in procs]
            except subprocess.TimeoutExpired:
                for p in procs:
                    p.kill()
                raise AssertionError("the gloo ranks did not finish within 120 s")
            if codes != [0] * WORLD:
                raise AssertionError("rank exit codes %s" % codes)
            cls.ranks = []
            for r in range(WORLD):
                with np.load(os.path.join(d, "rank%d.npz" % r)) as f:
                    cls.ranks.append({k: f[k] for k in f.files})

    def check_loss(self, name):
        want, want_g = self.ref[name + "_loss"], self.ref[name + "_grad"]
        for r in self.ranks:
            self.assertAlmostEqual(float(r[name + "_loss"][0]), want,
                                   delta=2e-6 * abs(want) + 1e-7)
        grad = np.concatenate([r[name + "_grad"] for r in self.ranks])
        self.assertEqual(grad.shape, want_g.shape)
        self.assertLessEqual(np.abs(grad - want_g).max(), 2e-5 * np.abs(want_g).max())

    def test_class_balance_logits(self):
        self.check_loss("cb_logits")

    def test_class_balance_probabilities(self):
        self.check_loss("cb_probs")

    def test_mcc(self):
        self.check_loss("mcc")

    def check_thresholds(self, name):
        keys = [k for k in self.ref if k.startswith(name + "_") and "_w" not in k[len(name):]
                and "_pl" not in k[len(name):]]
        self.assertGreaterEqual(len(keys), 3)
        for r in self.ranks:
            for k in keys:
                np.testing.assert_array_equal(r[k], np.atleast_1d(self.ref[k]), err_msg=k)
        for s in range(STEPS):
            for what in ("w", "pl"):
                got = np.concatenate([r["%s_%s%d" % (name, what, s)] for r in self.ranks])
                np.testing.assert_array_equal(got, self.ref["%s_%s%d" % (name, what, s)])

    def check_split(self, name):
        """All-reduced statistics: the states equal one process's to the
        rounding of the reordered double sums; masks and labels equal."""
        prefix = "split_%s_" % name
        steps = ["%s%s%d" % (prefix, w, s) for s in range(STEPS) for w in ("w", "pl")]
        keys = [k for k in self.ref if k.startswith(prefix) and k not in steps]
        self.assertGreaterEqual(len(keys), 1)
        for r in self.ranks:
            for k in keys:
                np.testing.assert_allclose(r[k], np.atleast_1d(self.ref[k]), rtol=1e-6,
                                           atol=1e-7, err_msg=k)
        for s in range(STEPS):
            got = np.concatenate([r["%sw%d" % (prefix, s)] for r in self.ranks])
            np.testing.assert_allclose(got, self.ref["%sw%d" % (prefix, s)], rtol=1e-5, atol=1e-6)
            got = np.concatenate([r["%spl%d" % (prefix, s)] for r in self.ranks])
            np.testing.assert_array_equal(got, self.ref["%spl%d" % (prefix, s)])

    def test_split_statistics_all_reduced(self):
        for name, _ in SPLITS:
            with self.subTest(name):
                self.check_split(name)

    def test_flexmatch(self):
        self.check_thresholds("flexmatch")
        self.assertGreater(self.ref["flexmatch_counts"].sum(), 0)

    def test_freematch(self):
        self.check_thresholds("freematch")

    def test_freematch_quantile(self):
        self.check_thresholds("freematch_q")

    def test_softmatch(self):
        self.check_thresholds("softmatch")

    def test_threshold_module_with_a_process_group(self):
        for r in self.ranks:
            np.testing.assert_array_equal(r["module_tau"], self.ref["module_tau"])
        for s in range(STEPS):
            got = np.concatenate([r["module_w%d" % s] for r in self.ranks])
            np.testing.assert_array_equal(got, self.ref["module_w%d" % s])

    def test_adamatch_module_gathers_labelled_and_unlabelled_rows(self):
        for r in self.ranks:
            np.testing.assert_array_equal(r["ada_target"], self.ref["ada_target"])
        for s in range(STEPS):
            for what in ("w", "pl"):
                got = np.concatenate([r["ada_%s%d" % (what, s)] for r in self.ranks])
                np.testing.assert_array_equal(got, self.ref["ada_%s%d" % (what, s)])
        self.assertTrue(0 < sum(self.ref["ada_w%d" % s].sum() for s in range(STEPS))
                        < STEPS * ROWS)

    def test_control_local_updates_differ(self):
        """Without the gather a rank's replica drifts from the global state."""
        local = {}
        run_thresholds(local, lambda s: (STEP_CUTS[s][1], STEP_CUTS[s][2]),
                       lambda th, p, s, lo, hi: th.update_probs(p, data()[2][s, lo:hi]))
        for name in ("freematch", "softmatch"):
            self.assertFalse(np.array_equal(local[name + "_class_probs"],
                                            self.ref[name + "_class_probs"]), name)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--rank":
        rank_main(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        sys.exit(0)
    if not dist.is_available() or not dist.is_gloo_available():
        print("skipping the data-parallel test: torch.distributed %s"
              % ("is not available in this PyTorch build" if not dist.is_available()
                 else "has no gloo backend"))
        sys.exit(77)
    unittest.main()
