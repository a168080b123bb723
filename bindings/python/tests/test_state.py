"""EMATeacher and FlexMatchThresholds against NumPy references of
docs/ema.md and docs/labels.md; save / load round trips."""
import math
import os
import tempfile
import unittest

import numpy as np
import torch

import kdlib


class EMA(unittest.TestCase):
    def setUp(self):
        self.rng = np.random.default_rng(11)

    def arrays(self):
        return [self.rng.standard_normal(s).astype(np.float32) for s in [(3, 4), (5,), (0,), (2, 2)]]

    def test_update_rule_and_warmups(self):
        for warmup, ref_a in [(False, lambda a, t: a), (True, lambda a, t: min(a, 1 - 1 / (t + 1))),
                              ("tf", lambda a, t: min(a, (1 + t) / (10 + t)))]:
            student = self.arrays()
            ema = kdlib.EMATeacher(student, decay=0.9, warmup=warmup,
                                   kinds=["average", "average", "average", "copy"])
            ref = [a.copy() for a in student]
            for t in range(5):
                for a in student:
                    a += self.rng.standard_normal(a.shape).astype(np.float32)   # in place, as an optimizer
                self.assertAlmostEqual(ema.next_decay, ref_a(0.9, t), places=6)
                a_t = np.float32(ref_a(0.9, t))
                b_t = np.float32(1.0 - ref_a(0.9, t))
                ref = [a_t * r + b_t * s for r, s in zip(ref[:3], student[:3])] + [student[3].copy()]
                ema.update()
                self.assertEqual(ema.step, t + 1)
                for k in range(4):
                    np.testing.assert_allclose(ema.teacher(k), ref[k], rtol=1e-6, atol=1e-6)
            self.assertEqual(ema.shape, (4, 21))
            self.assertEqual(ema.warmup, {False: "none", True: "mean_teacher", "tf": "tf"}[warmup])

    def test_views_follow_and_keep_handle_alive(self):
        student = self.arrays()
        ema = kdlib.EMATeacher(student, decay=0.5, warmup=False)
        view = ema.teacher(0)
        self.assertFalse(view.flags.writeable)
        before = view.copy()
        student[0] += 1.0
        ema.update()
        np.testing.assert_allclose(view, before + 0.5, rtol=1e-6)
        flat = ema.teacher_flat()
        self.assertEqual(flat.shape, (21,))
        ema.close()
        del ema
        np.testing.assert_allclose(view, before + 0.5, rtol=1e-6)   # storage still alive
        closed = kdlib.EMATeacher(student)
        closed.close()
        with self.assertRaisesRegex(ValueError, "closed"):
            closed.update()

    def test_swap_copy_reset_flat(self):
        student = self.arrays()
        orig = [a.copy() for a in student]
        ema = kdlib.EMATeacher(student, decay=0.0, warmup=False)
        for a in student:
            a *= 2
        ema.swap()
        for a, o in zip(student, orig):
            np.testing.assert_array_equal(a, o)
        ema.swap()
        ema.update()
        out = [np.zeros_like(a) for a in student]
        ema.copy_to(out)
        for a, o in zip(out, orig):
            np.testing.assert_array_equal(a, 2 * o)
        flat = np.concatenate([a.ravel() for a in student]) + 1
        ema.update_flat(flat)
        np.testing.assert_array_equal(ema.teacher_flat(), flat)
        dst = np.zeros(21, np.float32)
        ema.copy_to_flat(dst)
        np.testing.assert_array_equal(dst, flat)
        ema.reset_flat(np.zeros(21, np.float32))
        self.assertEqual(ema.step, 0)
        ema.reset()
        np.testing.assert_array_equal(ema.teacher(0), student[0])
        with self.assertRaisesRegex(ValueError, "arrays must hold 4"):
            ema.update(student[:2])
        with self.assertRaisesRegex(ValueError, r"arrays\[1\] must have 5 elements"):
            ema.update([student[0], np.zeros(6, np.float32), student[2], student[3]])
        with self.assertRaisesRegex(ValueError, "C-contiguous"):
            kdlib.EMATeacher([np.zeros((4, 4), np.float32)[:, ::2]])
        with self.assertRaises(kdlib.KdInvalidArgumentError):
            ema.decay = 1.5
        self.assertEqual(ema.decay, 0.0)

    def test_flat_handle_and_torch_parameters(self):
        model = torch.nn.Linear(4, 3)
        params = [p.detach().numpy() for p in model.parameters()]
        ema = kdlib.EMATeacher(params, decay=0.99, warmup=True)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(1.0)
        ema.update()          # first update with Mean Teacher's warm-up copies
        np.testing.assert_array_equal(ema.teacher(0), model.weight.detach().numpy())
        flat = self.rng.standard_normal(7).astype(np.float32)
        e2 = kdlib.EMATeacher(flat, decay=0.5, warmup=False)
        e2.update(flat + 2)
        np.testing.assert_allclose(e2.teacher(0), flat + 1, rtol=1e-6)

    def test_save_load_round_trip(self):
        student = self.arrays()
        ema = kdlib.EMATeacher(student, decay=0.7, warmup="tf")
        for _ in range(3):
            student[1] += 1
            ema.update()
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "t.kdema")
            ema.save(path)
            other = kdlib.EMATeacher([np.zeros_like(a) for a in student], decay=0.1, warmup=False)
            other.load(path)
            self.assertEqual(other.step, 3)
            self.assertAlmostEqual(other.decay, 0.7, places=6)
            self.assertEqual(other.warmup, "tf")
            for k in range(4):
                np.testing.assert_array_equal(other.teacher(k), ema.teacher(k))


def ref_thresholds(pred, c, tau, mapping, warmup):
    sigma = np.array([(pred == k).sum() for k in range(c)], np.float64)
    unused = (pred == -1).sum()
    denom = max(sigma.max(), unused) if warmup else sigma.max()
    beta = sigma / denom if denom > 0 else np.zeros(c)
    m = {"linear": lambda x: x, "concave": lambda x: np.log(x + 1) / math.log(2),
         "convex": lambda x: x / (2 - x)}[mapping]
    return beta, m(beta) * tau


class FlexMatch(unittest.TestCase):
    def test_thresholds_against_reference(self):
        rng = np.random.default_rng(12)
        n, c = 200, 5
        for mapping in ("linear", "concave", "convex"):
            for warmup in (False, True):
                fm = kdlib.FlexMatchThresholds(n, c, threshold=0.8, mapping=mapping, warmup=warmup)
                pred = -np.ones(n, np.int64)
                beta, tau = ref_thresholds(pred, c, 0.8, mapping, warmup)
                np.testing.assert_array_equal(fm.thresholds(), np.zeros(c, np.float32))
                for _ in range(4):
                    idx = rng.integers(0, n, 40)
                    conf = rng.uniform(0.5, 1.0, 40).astype(np.float32)
                    p = rng.integers(0, c, 40)
                    fm.update(idx, conf, p)
                    for i, cf, pp in zip(idx, conf, p):
                        if cf > np.float32(0.8):
                            pred[i] = pp
                    beta, tau = ref_thresholds(pred, c, 0.8, mapping, warmup)
                    np.testing.assert_allclose(fm.learning_effect(), beta, rtol=1e-6)
                    np.testing.assert_allclose(fm.thresholds(), tau, rtol=1e-6, atol=1e-7)
                np.testing.assert_array_equal(fm.predictions(), pred)
                sigma, unused = fm.counts()
                self.assertEqual(unused, (pred == -1).sum())
                self.assertEqual(fm.mapping, mapping)
                self.assertEqual(fm.warmup, warmup)

    def test_feeds_pseudo_label_and_state_file(self):
        rng = np.random.default_rng(13)
        fm = kdlib.FlexMatchThresholds(50, 4, threshold=0.6, non_strict=True)
        fm.update(np.arange(50), rng.uniform(0, 1, 50), rng.integers(0, 4, 50))
        tau = fm.thresholds()
        s = rng.standard_normal((8, 4)).astype(np.float32)
        t = (rng.standard_normal((8, 4)) * 3).astype(np.float32)
        r = kdlib.pseudo_label(s, t, class_thresholds=tau)
        conf = np.exp(t - t.max(1, keepdims=True))
        conf = conf.max(1) / conf.sum(1)
        np.testing.assert_array_equal(r.mask, (conf > tau[t.argmax(1)]).astype(np.float32))
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "fm.state")
            fm.save(path)
            other = kdlib.FlexMatchThresholds(50, 4)
            other.load(path)
            np.testing.assert_array_equal(other.predictions(), fm.predictions())
            self.assertTrue(other.non_strict)
            with self.assertRaises(kdlib.KdMismatchError):
                kdlib.FlexMatchThresholds(51, 4).load(path)
        with self.assertRaisesRegex(kdlib.KdInvalidArgumentError, "50|index|indices"):
            fm.update([50], [0.9], [0])
        with self.assertRaises(kdlib.KdNotFiniteError):
            fm.update([0], np.array([np.nan], np.float32), [0])
        with self.assertRaises(ValueError):
            fm.mapping = "cubic"
        lo, hi = kdlib.flexmatch_param_bounds(1)
        self.assertEqual((lo, hi), (0.0, 1.0))


if __name__ == "__main__":
    unittest.main()
