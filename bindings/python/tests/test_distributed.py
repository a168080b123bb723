"""kdlib._distributed: the split batch losses over an all-reduce (threads as
ranks, and torch.distributed with the gloo backend on two processes) equal
the single-process loss and gradient of the whole batch."""
import os
import subprocess
import sys
import tempfile
import threading
import unittest

import numpy as np

import kdlib
from kdlib import _lib
from kdlib import _losses as C


def whole_batch(kind, z, **opt):
    h = kdlib.Loss(kind, z.shape[1])
    if kind == C.MCC:
        h.set(C.PARAM_TEMPERATURE, opt.get("temperature", 2.5))
    elif opt.get("inputs") == "probabilities":
        h.set_int(C.PARAM_INPUT_TYPE, C.INPUT_PROBABILITIES)
    h.bind_matrix(C.ARG_STUDENT, z)
    g = np.zeros_like(z)
    h.bind_output(C.ARG_GRAD_STUDENT, g)
    loss = h.forward_backward(z.shape[0])
    h.close()
    return float(np.asarray(loss).reshape(-1)[0]), g


class ThreadAllReduce:
    """SUM over `ranks` threads, like MPI_Allreduce."""

    def __init__(self, ranks):
        self.barrier = threading.Barrier(ranks)
        self.lock = threading.Lock()
        self.total = None

    def __call__(self, stats):
        with self.lock:
            self.total = stats.copy() if self.total is None else self.total + stats
        self.barrier.wait()
        out = self.total.copy()
        self.barrier.wait()
        return out


@unittest.skipUnless(_lib.has("kd_loss_finish"), "library without the split statistics API")
class SplitBatchLoss(unittest.TestCase):
    def test_thread_ranks_equal_the_whole_batch(self):
        rng = np.random.default_rng(3)
        z = (rng.standard_normal((41, 6)) * 2).astype(np.float32)
        p = np.exp(z - z.max(1, keepdims=True))
        p = (p / p.sum(1, keepdims=True)).astype(np.float32)
        cases = [("mcc", C.MCC, z, {}), ("class_balance", C.CLASS_BALANCE, z, {}),
                 ("class_balance", C.CLASS_BALANCE, p, {"inputs": "probabilities"})]
        for name, kind, x, opt in cases:
            ref_loss, ref_grad = whole_batch(kind, x, **opt)
            cuts = [0, 10, 10, 41]  # three ranks, one of them empty
            results = [None] * 3
            reduce = ThreadAllReduce(3)

            def rank(r):
                results[r] = kdlib.split_batch_loss(name, np.ascontiguousarray(x[cuts[r]:cuts[r + 1]]),
                                                    reduce, **opt)

            threads = [threading.Thread(target=rank, args=(r,)) for r in range(3)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            for r in results:
                self.assertAlmostEqual(r.loss, ref_loss, delta=2e-6 * abs(ref_loss) + 1e-7)
            grad = np.concatenate([r.grad_student for r in results])
            self.assertLessEqual(np.abs(grad - ref_grad).max(), 2e-5 * np.abs(ref_grad).max())
            self.assertEqual(results[0].global_stats[-1], x.shape[0])

    def test_bad_kind_and_an_unsummed_count(self):
        z = np.zeros((4, 3), np.float32)
        with self.assertRaises(ValueError):
            kdlib.split_batch_loss("kl", z, lambda s: None)
        # a reduction that divides (averages over 2 ranks) gives N < n here
        with self.assertRaises(kdlib.KdInvalidArgumentError):
            kdlib.split_batch_loss("mcc", z, lambda s: s / 2)


def _torch_rank(rank, world, init_file, out_dir):
    x = np.load(os.path.join(out_dir, "x.npy"))
    import torch
    import torch.distributed as dist
    dist.init_process_group("gloo", init_method="file://" + init_file, rank=rank, world_size=world)
    cuts = [0, 13, x.shape[0]]
    z = torch.tensor(x[cuts[rank]:cuts[rank + 1]], requires_grad=True)
    loss = kdlib.torch_split_batch_loss("mcc", z)
    loss.backward()
    # what DDP does to parameter gradients: average over ranks
    np.save(os.path.join(out_dir, "grad%d.npy" % rank), (z.grad / world).numpy())
    np.save(os.path.join(out_dir, "loss%d.npy" % rank), np.array([loss.item()]))
    dist.destroy_process_group()


@unittest.skipUnless(_lib.has("kd_loss_finish"), "library without the split statistics API")
class TorchDistributed(unittest.TestCase):
    def test_two_gloo_ranks_with_ddp_averaging_give_the_whole_batch_gradient(self):
        import torch.distributed as dist
        if not dist.is_available():
            self.skipTest("torch.distributed not available")
        rng = np.random.default_rng(9)
        x = (rng.standard_normal((30, 5)) * 2).astype(np.float32)
        ref_loss, ref_grad = whole_batch(C.MCC, x)
        with tempfile.TemporaryDirectory() as d:
            np.save(os.path.join(d, "x.npy"), x)
            env = dict(os.environ)
            top = os.path.dirname(os.path.dirname(os.path.abspath(kdlib.__file__)))
            env["PYTHONPATH"] = os.pathsep.join([top, env.get("PYTHONPATH", "")])
            # two processes started as scripts (no multiprocessing re-import of
            # the test runner's __main__)
            procs = [subprocess.Popen([sys.executable, os.path.abspath(__file__), "--torch-rank",
                                       str(r), os.path.join(d, "init"), d], env=env)
                     for r in range(2)]
            for p in procs:
                self.assertEqual(p.wait(timeout=300), 0)
            losses = [np.load(os.path.join(d, "loss%d.npy" % r))[0] for r in range(2)]
            grad = np.concatenate([np.load(os.path.join(d, "grad%d.npy" % r)) for r in range(2)])
        for v in losses:
            self.assertAlmostEqual(v, ref_loss, delta=2e-6 * abs(ref_loss) + 1e-7)
        # grad_scale = world size undoes the averaging: the rows are the global
        # gradient's rows
        self.assertLessEqual(np.abs(grad - ref_grad).max(), 2e-5 * np.abs(ref_grad).max())


class ThresholdSplitStats(unittest.TestCase):
    """Thresholds.local_stats summed over shards -> update_stats equals
    update_probs (and update_labeled_probs) with the whole batch."""

    def test_shards_summed_give_the_whole_batch_state(self):
        rng = np.random.default_rng(3)
        z = rng.standard_normal((4, 30, 5)) * 2.0
        rows = (np.exp(z) / np.exp(z).sum(-1, keepdims=True)).astype(np.float32)
        cuts = [0, 7, 7, 30]  # three ranks, one empty
        for algo, params in [("freematch", {}), ("softmatch", {"dist_align": 0}),
                             ("adamatch", {}), ("dash", {}), ("debiaspl", {})]:
            whole = kdlib.Thresholds(algo, 10, 5, **params)
            split = kdlib.Thresholds(algo, 10, 5, **params)
            labeled = algo == "adamatch"
            for s in range(3):
                p, lab = rows[s], rows[s + 1]
                if labeled:
                    whole.update_labeled_probs(lab)
                whole.update_probs(p)
                total = sum(split.local_stats(p[a:b], labeled=lab[a:b] if labeled else None)
                            for a, b in zip(cuts, cuts[1:]))
                split.update_stats(total)
                w1, l1 = whole.weights_probs(rows[s + 1])
                w2, l2 = split.weights_probs(rows[s + 1])
                np.testing.assert_allclose(w1, w2, rtol=1e-6, atol=1e-7, err_msg=algo)
                np.testing.assert_array_equal(l1, l2)
            for name in ("class_probs", "global_threshold", "conf_var", "target_probs", "updates"):
                try:
                    want = whole.state(name)
                except kdlib.KdUnsupportedError:
                    continue
                np.testing.assert_allclose(split.state(name), want, rtol=1e-6, err_msg=name)

    def test_refusals_and_invalid_buffers(self):
        for algo, params in [("flexmatch", {}), ("softmatch", {}),
                             ("freematch", {"use_quantile": 1})]:
            with self.assertRaises(kdlib.KdUnsupportedError):
                kdlib.Thresholds(algo, 10, 5, **params).stats_size()
        th = kdlib.Thresholds("debiaspl", 10, 5)
        stats = th.local_stats(np.full((2, 5), 0.2, np.float32))
        with self.assertRaises(ValueError):
            th.update_stats(stats[:-1])
        stats[0] = -1.0
        with self.assertRaises(kdlib.KdError):
            th.update_stats(stats)
        stats[0] = np.nan
        with self.assertRaises(kdlib.KdError):
            th.update_stats(stats)
        self.assertEqual(int(th.state("updates")), 0)


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--torch-rank":
        _torch_rank(int(sys.argv[2]), 2, sys.argv[3], sys.argv[4])
    else:
        unittest.main()
