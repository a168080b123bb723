"""kdlib.torch threshold modules (FlexMatchThreshold, FreeMatchThreshold,
SoftMatchWeighting, AdaMatchThreshold, DashThreshold, DebiasPLThreshold) against the C results through kdlib.Thresholds: masks,
weights, pseudo-labels and state over several steps in each algorithm's
order; logits and probabilities; dtypes and (..., C) shapes; state_dict,
torch.save and the state file."""
import io
import os
import tempfile
import unittest

import numpy as np
import torch

import kdlib
import kdlib.torch as kdt

C, N, ROWS, STEPS = 5, 64, 24, 4


def batches(seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(STEPS):
        z = torch.randn(ROWS, C, generator=g) * 2.5
        yield z, torch.randperm(N, generator=g)[:ROWS]


def softmax32(z):
    return torch.softmax(z.float(), -1).contiguous().numpy()


def c_steps(algorithm, params, update_first, seed=0):
    """The C calls a module must make: (weights, pseudo-labels) per step."""
    th = kdlib.Thresholds(algorithm, N if algorithm == "flexmatch" else 1, C, **params)
    out = []
    for z, idx in batches(seed):
        p = softmax32(z)
        i = idx.numpy() if algorithm == "flexmatch" else None
        if update_first:
            th.update_probs(p, i)
        out.append(th.weights_probs(p))
        if not update_first:
            th.update_probs(p, i)
    return th, out


CASES = [("flexmatch", lambda: kdt.FlexMatchThreshold(N, C, threshold=0.8, mapping="linear"),
          {"threshold": 0.8, "mapping": "linear"}, False),
         ("freematch", lambda: kdt.FreeMatchThreshold(C, momentum=0.8, clip=0.95),
          {"momentum": 0.8, "clip": 0.95}, True),
         ("freematch", lambda: kdt.FreeMatchThreshold(C, momentum=0.8, use_quantile=True),
          {"momentum": 0.8, "use_quantile": True}, True),
         ("softmatch", lambda: kdt.SoftMatchWeighting(C, momentum=0.8),
          {"momentum": 0.8}, True),
         ("softmatch", lambda: kdt.SoftMatchWeighting(C, momentum=0.8, per_class=True),
          {"momentum": 0.8, "per_class": True}, True)]


def run(module, algorithm, seed=0, inputs="logits"):
    out = []
    for z, idx in batches(seed):
        x = torch.softmax(z, -1) if inputs == "probabilities" else z
        out.append(module(x, idx if algorithm == "flexmatch" else None, inputs=inputs))
    return out


class ThresholdModules(unittest.TestCase):
    def test_modules_equal_the_c_calls_in_the_reference_order(self):
        for algorithm, make, params, update_first in CASES:
            m = make()
            self.assertIsInstance(m, torch.nn.Module)
            th, want = c_steps(algorithm, params, update_first)
            got = run(m, algorithm)
            varied = False
            for (w, pl), r in zip(want, got):
                self.assertIsInstance(r, kdt.ThresholdOutput)
                self.assertEqual(r.mask.dtype, torch.float32)
                self.assertEqual(r.pseudo_labels.dtype, torch.int64)
                np.testing.assert_array_equal(r.mask.numpy(), w, err_msg=repr(m))
                np.testing.assert_array_equal(r.pseudo_labels.numpy(), pl)
                self.assertIs(r.weights, r.mask)
                varied |= 0 < float(w.min()) < 1 or len(set(w.tolist())) > 1
            self.assertTrue(varied, "%r: the weights never differ between rows" % m)
            if algorithm != "softmatch":
                np.testing.assert_array_equal(m.thresholds.numpy(), th.thresholds())
            if algorithm == "flexmatch":
                np.testing.assert_array_equal(m.handle.predictions(), th.predictions())
            else:
                np.testing.assert_array_equal(m.state("class_probs").numpy(),
                                              th.state("class_probs"))

    def test_flexmatch_order_and_usb_order(self):
        """tllib's order by default: the first step's mask is the fresh
        state's; update_first=True gives USB's order."""
        z, idx = next(batches())
        p = softmax32(z)
        fresh = kdlib.Thresholds("flexmatch", N, C, threshold=0.6)
        w0, _ = fresh.weights_probs(p)
        m = kdt.FlexMatchThreshold(N, C, threshold=0.6)
        np.testing.assert_array_equal(m(z, idx).mask.numpy(), w0)
        fresh.update_probs(p, idx.numpy())
        w1, _ = fresh.weights_probs(p)
        usb = kdt.FlexMatchThreshold(N, C, threshold=0.6, update_first=True)
        np.testing.assert_array_equal(usb(z, idx).mask.numpy(), w1)
        self.assertFalse(np.array_equal(w0, w1))
        with self.assertRaises(ValueError):
            m(z)                                  # FlexMatch needs the indices

    def test_probabilities_equal_logits(self):
        for algorithm, make, _, _ in CASES:
            a = run(make(), algorithm, inputs="logits")
            b = run(make(), algorithm, inputs="probabilities")
            for x, y in zip(a, b):
                self.assertTrue(torch.allclose(x.mask, y.mask, atol=1e-5))

    def test_dtypes_shapes_and_no_grad(self):
        m = kdt.SoftMatchWeighting(C)
        z = (torch.randn(3, 8, C) * 2).double().requires_grad_(True)
        r = m(z)
        self.assertEqual(r.mask.shape, (3, 8))
        self.assertEqual(r.pseudo_labels.shape, (3, 8))
        self.assertEqual(r.mask.dtype, torch.float64)
        self.assertFalse(r.mask.requires_grad)
        ref = kdt.SoftMatchWeighting(C)
        np.testing.assert_array_equal(ref(z.detach().float().reshape(-1, C)).mask.numpy(),
                                      r.mask.reshape(-1).float().numpy())
        self.assertEqual(m(z.to(torch.bfloat16)).mask.dtype, torch.bfloat16)
        with self.assertRaises(ValueError):
            m(torch.zeros(4, C + 1))
        with self.assertRaises(TypeError):
            m(torch.zeros(4, C, dtype=torch.int64))
        with self.assertRaises(ValueError):
            kdt.FreeMatchThreshold(C, inputs="probs")
        with self.assertRaises(kdlib.KdInvalidArgumentError):
            m(torch.full((2, C), 2.0), inputs="probabilities")   # not probabilities

    def test_state_dict_torch_save_and_state_file(self):
        for algorithm, make, _, _ in CASES:
            a = make()
            run(a, algorithm)
            sd = a.state_dict()
            buf = io.BytesIO()
            torch.save(sd, buf)
            buf.seek(0)
            b = make()
            b.load_state_dict(torch.load(buf))
            fresh = make()
            ra, rb, rf = (run(x, algorithm, seed=1) for x in (a, b, fresh))
            for x, y, f in zip(ra, rb, rf):
                np.testing.assert_array_equal(x.mask.numpy(), y.mask.numpy())
            self.assertFalse(all(torch.equal(x.mask, f.mask) for x, f in zip(ra, rf)),
                             "%r: the restored state makes no difference" % a)
            with tempfile.TemporaryDirectory() as d:
                path = os.path.join(d, "th.state")
                a.save(path)
                c = make()
                c.load(path)
                for x, y in zip(run(a, algorithm, seed=2), run(c, algorithm, seed=2)):
                    np.testing.assert_array_equal(x.mask.numpy(), y.mask.numpy())

    def test_state_dict_of_another_shape_or_kind_is_refused(self):
        a = kdt.FreeMatchThreshold(C)
        with self.assertRaises(kdlib.KdMismatchError):
            kdt.FreeMatchThreshold(C + 1).load_state_dict(a.state_dict())
        with self.assertRaises(kdlib.KdVersionError):
            kdt.SoftMatchWeighting(C).load_state_dict(a.state_dict())
        with self.assertRaises(ValueError):
            kdt.FreeMatchThreshold(C).set_extra_state({"file": b""})

    def test_reset(self):
        m = kdt.FreeMatchThreshold(C, momentum=0.5)
        tau0 = m.global_threshold
        run(m, "freematch")
        self.assertNotEqual(m.global_threshold, tau0)
        m.reset()
        self.assertEqual(m.global_threshold, tau0)
        self.assertIn("num_classes=5", repr(m))


class AdaMatchModule(unittest.TestCase):
    def test_module_equals_the_c_calls_and_aligns_the_labels(self):
        m = kdt.AdaMatchThreshold(C, threshold=0.9, momentum=0.7)
        th = kdlib.Thresholds("adamatch", 1, C, threshold=0.9, momentum=0.7)
        g = torch.Generator().manual_seed(5)
        moved = kept = 0
        for _ in range(6):
            z_lb = torch.randn(10, C, generator=g) * 3.0 + torch.arange(C) * 0.5
            z = torch.randn(ROWS, C, generator=g) * 2.5
            th.update_labeled_probs(softmax32(z_lb))
            th.update_probs(softmax32(z))
            w, pl = th.weights_probs(softmax32(z))
            r = m(z, z_lb)
            np.testing.assert_array_equal(r.mask.numpy(), w)
            np.testing.assert_array_equal(r.pseudo_labels.numpy(), pl)
            moved += int((r.pseudo_labels != z.argmax(-1)).sum())
            kept += int(r.mask.sum())
        self.assertGreater(moved, 0)               # the labels are the aligned rows'
        self.assertTrue(0 < kept < 6 * ROWS)
        np.testing.assert_array_equal(m.state("target_probs").numpy(), th.state("target_probs"))
        self.assertEqual(m.global_threshold, float(th.state("global_threshold")[0]))
        self.assertEqual(m.state("labeled_updates"), 6)
        b = kdt.AdaMatchThreshold(C, threshold=0.9, momentum=0.7)
        b.load_state_dict(m.state_dict())
        z = torch.randn(ROWS, C, generator=g)
        np.testing.assert_array_equal(b.weights(z).mask.numpy(), m.weights(z).mask.numpy())
        with self.assertRaises(kdlib.KdVersionError):
            kdt.SoftMatchWeighting(C).load_state_dict(m.state_dict())
        with self.assertRaises(kdlib.KdUnsupportedError):
            kdlib.Thresholds("freematch", 1, C).update_labeled_probs(softmax32(z))


class DashModule(unittest.TestCase):
    def test_module_equals_the_c_calls_through_both_phases(self):
        params = dict(rho_init=1.0, gamma=1.5, dash_c=1.0001, rho_min=0.3, period=2,
                      temperature=0.5)
        m = kdt.DashThreshold(C, **params)
        th = kdlib.Thresholds("dash", 1, C, **params)
        g = torch.Generator().manual_seed(7)
        phases = set()
        kept = 0
        for _ in range(10):
            z = torch.randn(ROWS, C, generator=g) * 3.0
            th.update_probs(softmax32(z))
            w, pl = th.weights_probs(softmax32(z))
            r = m(z.double())
            self.assertEqual(r.mask.dtype, torch.float64)
            np.testing.assert_array_equal(r.mask.numpy(), w)
            np.testing.assert_array_equal(r.pseudo_labels.numpy(), pl)
            t = m.targets(z)
            if m.use_hard_label:
                np.testing.assert_array_equal(t.numpy(), z.argmax(-1).numpy())
            else:
                torch.testing.assert_close(t, torch.softmax(z / 0.5, -1))
                torch.testing.assert_close(m.targets(torch.softmax(z, -1), inputs="probabilities"),
                                           t)
            phases.add(m.use_hard_label)
            kept += int(r.mask.sum())
        self.assertEqual(phases, {False, True})
        self.assertTrue(0 < kept < 10 * ROWS)
        self.assertEqual(m.rho, float(th.state("rho")[0]))
        self.assertEqual(m.state("rho_updates"), 5)
        self.assertEqual(kdt.DashThreshold(C).handle.rho_init, np.log(C))
        b = kdt.DashThreshold(C)
        b.load_state_dict(m.state_dict())
        self.assertEqual((b.rho, b.use_hard_label, b.handle.period), (m.rho, True, 2))
        with self.assertRaises(kdlib.KdUnsupportedError):
            th.weights(np.array([0.9], np.float32), np.array([0], np.int32))


class DebiasPLModule(unittest.TestCase):
    def test_module_masks_before_the_update_and_gives_the_margin(self):
        m = kdt.DebiasPLThreshold(C, threshold=0.8, momentum=0.7, debias_tau=0.5)
        th = kdlib.Thresholds("debiaspl", 1, C, threshold=0.8, momentum=0.7, debias_tau=0.5)
        g = torch.Generator().manual_seed(8)
        moved = kept = 0
        for _ in range(6):
            z = torch.randn(ROWS, C, generator=g) * 2.5 + torch.linspace(3.0, 0.0, C)
            w, pl = th.weights_probs(softmax32(z))
            th.update_probs(softmax32(z))
            r = m(z)
            np.testing.assert_array_equal(r.mask.numpy(), w)
            np.testing.assert_array_equal(r.pseudo_labels.numpy(), pl)
            moved += int((r.pseudo_labels != z.argmax(-1)).sum())
            kept += int(r.mask.sum())
        self.assertGreater(moved, 0)               # debiased towards the tail classes
        self.assertTrue(0 < kept < 6 * ROWS)
        np.testing.assert_array_equal(m.p_hat.numpy(), th.state("class_probs"))
        z_s = torch.randn(ROWS, C, generator=g, requires_grad=True)
        adj = m.adjust(z_s)
        torch.testing.assert_close(adj.detach(), z_s.detach() + 0.5 * torch.log(m.p_hat))
        adj.sum().backward()
        self.assertIsNotNone(z_s.grad)
        b = kdt.DebiasPLThreshold(C, threshold=0.8, momentum=0.7, debias_tau=0.5)
        b.load_state_dict(m.state_dict())
        np.testing.assert_array_equal(b.p_hat.numpy(), m.p_hat.numpy())
        with self.assertRaises(kdlib.KdVersionError):
            kdt.DashThreshold(C).load_state_dict(m.state_dict())


if __name__ == "__main__":
    unittest.main()
