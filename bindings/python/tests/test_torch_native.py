"""kdlib.torch as a PyTorch user expects it (issue 20): no silent wrong
results (once-differentiable, requires_grad on inputs without a gradient,
explicit class-balance input kind, no gradient work under no_grad) and
torch-native results and arguments (int64 pseudo-labels, named tuples,
tensors everywhere, (..., C) inputs, float64 / float16 / bfloat16,
gradcheck)."""
import unittest
from unittest import mock

import numpy as np
import torch
import torch.nn.functional as F

import kdlib
import kdlib.torch as kdt

from .test_losses import ref_class_balance


def logits(*shape, scale=2.0, seed=0, grad=True, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale).to(dtype).requires_grad_(grad)


def every_function(n=6, c=4):
    """(name, differentiable inputs, loss(*inputs)) for every kdlib.torch function."""
    t = logits(n, c, scale=3.0, seed=1, grad=False)
    y = torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(2))
    w = logits(n, 5, seed=3, grad=False)
    return [
        ("cross_entropy", [logits(n, c)], lambda s: kdt.cross_entropy(s, y, 0.1)),
        ("soft_cross_entropy", [logits(n, c)],
         lambda s: kdt.soft_cross_entropy(s, teacher=t, temperature=2.0)),
        ("kl_distill", [logits(n, c)], lambda s: kdt.kl_distill(s, t, y, 3.0, 0.7)),
        ("kl_distill jsd", [logits(n, c)],
         lambda s: kdt.kl_distill(s, t, temperature=2.0, divergence="jsd")),
        ("logit_mse", [logits(n, c)], lambda s: kdt.logit_mse(s, t)),
        ("pseudo_label", [logits(n, c)], lambda s: kdt.pseudo_label(s, t, 0.5).loss),
        ("strong_weak", [logits(n, c)], lambda s: kdt.strong_weak_consistency(s, t, 0.5)),
        ("consistency", [logits(n, c), logits(n, c, seed=5)],
         lambda a, b: kdt.consistency(a, b, "kl")),
        ("class_balance", [logits(n, c)], lambda s: kdt.class_balance(s, "logits")),
        ("mcc", [logits(n, c)], lambda s: kdt.mcc(s, 2.5)),
        ("worst_case", [logits(n, c), logits(n + 1, c, seed=6)],
         lambda a, b: kdt.worst_case_estimation(t, a, logits(n + 1, c, seed=7, grad=False), b)),
        ("linear_kl_distill", [logits(n, 5, seed=8), logits(c, 5, seed=9, scale=0.5),
                               logits(c, seed=10, scale=0.5)],
         lambda h, wt, b: kdt.linear_kl_distill(h, wt, b, teacher_hidden=w,
                                                teacher_weight=logits(c, 5, seed=11, grad=False),
                                                temperature=2.0)),
    ]


class NoSilentWrongResults(unittest.TestCase):
    def test_double_backward_raises(self):
        for name, xs, fn in every_function():
            with self.subTest(name):
                loss = fn(*xs)
                gs = torch.autograd.grad(loss, xs, create_graph=True)
                penalty = sum((g ** 2).sum() for g in gs)
                with self.assertRaisesRegex(RuntimeError, "once-differentiable"):
                    penalty.backward()

    def test_input_gradient_penalty_raises(self):
        """The issue's case: a penalty on d loss / d x through a model."""
        torch.manual_seed(0)
        lin = torch.nn.Linear(5, 4)
        x = torch.randn(8, 5, requires_grad=True)
        t = torch.randn(8, 4)
        loss = kdt.kl_distill(lin(x), t, temperature=2.0)
        gx, = torch.autograd.grad(loss, x, create_graph=True)
        with self.assertRaisesRegex(RuntimeError, "once-differentiable"):
            (gx ** 2).sum().backward()
        # create_graph without a second backward through kdlib still works
        gx, = torch.autograd.grad(kdt.kl_distill(lin(x), t, temperature=2.0), x, create_graph=True)
        self.assertEqual(tuple(gx.shape), (8, 5))

    def test_requires_grad_on_an_input_without_gradient_raises(self):
        s = logits(6, 4)
        tg = logits(6, 4, seed=1)            # a teacher that requires grad
        y = torch.randint(0, 4, (6,))
        wg = torch.rand(6, requires_grad=True)
        T = torch.tensor(2.0, requires_grad=True)
        h, wt = logits(6, 5), logits(4, 5)
        cases = [
            ("teacher", lambda: kdt.kl_distill(s, tg, y, 2.0)),
            ("teacher[1]", lambda: kdt.kl_distill(s, [tg.detach(), tg], y, 2.0)),
            ("teacher", lambda: kdt.logit_mse(s, tg)),
            ("teacher", lambda: kdt.soft_cross_entropy(s, teacher=tg)),
            ("target_probs", lambda: kdt.soft_cross_entropy(s, tg.softmax(1))),
            ("weights", lambda: kdt.cross_entropy(s, y, weights=wg)),
            ("weights", lambda: kdt.pseudo_label(s, tg, 0.5, weights=wg)),
            ("mask", lambda: kdt.consistency(s, tg.detach(), mask=wg)),
            ("temperature", lambda: kdt.kl_distill(s, tg.detach(), y, T)),
            ("temperature", lambda: kdt.mcc(s, T)),
            ("teacher", lambda: kdt.linear_kl_distill(h, wt, None, tg)),
            ("teacher_hidden", lambda: kdt.linear_kl_distill(h, wt, teacher_hidden=h,
                                                             teacher_weight=wt.detach())),
            ("teacher_weight", lambda: kdt.linear_kl_distill(h, wt, teacher_hidden=h.detach(),
                                                             teacher_weight=wt)),
        ]
        for name, call in cases:
            with self.subTest(name):
                with self.assertRaisesRegex(ValueError, r"^%s requires grad.*\.detach\(\)"
                                            % name.replace("[", r"\[").replace("]", r"\]")):
                    call()
                with torch.no_grad():        # no graph: PyTorch gives no gradient either
                    call()
        self.assertIsNone(tg.grad)
        self.assertEqual(float(kdt.kl_distill(s, tg.detach(), y, torch.tensor(2.0))),
                         float(kdt.kl_distill(s, tg.detach(), y, 2.0)))

    def test_detached_by_definition_inputs_are_accepted(self):
        """tllib detaches the pseudo-label teacher, the weak view and the main
        heads: requiring grad there is fine and gives no gradient."""
        s, t = logits(8, 4), logits(8, 4, seed=1, scale=4.0)
        kdt.pseudo_label(s, t, 0.5).loss.backward()
        kdt.strong_weak_consistency(s, t, 0.5).backward()
        kdt.worst_case_estimation(t, s, t, s).backward()
        self.assertIsNone(t.grad)
        self.assertIsNotNone(s.grad)

    def test_class_balance_input_kind_is_explicit(self):
        p = torch.softmax(logits(16, 5, grad=False), 1).requires_grad_(True)
        with self.assertRaisesRegex(TypeError, "inputs='probabilities'.*tllib"):
            kdt.class_balance(p)
        with self.assertRaisesRegex(TypeError, "inputs='logits'"):
            kdlib.class_balance(p.detach().numpy())
        # tllib's ClassBalanceLoss takes probabilities: the 0.328066 vs 0.325127 case
        loss = kdt.class_balance(p, "probabilities")
        ref = ref_class_balance(p.detach().double())
        self.assertAlmostEqual(float(loss), float(ref), places=5)
        other = kdt.class_balance(p, inputs="logits")
        self.assertGreater(abs(float(other) - float(ref)), 1e-4)
        with self.assertRaisesRegex(ValueError, "inputs must be one of"):
            kdt.class_balance(p, "probability-ish")

    def test_no_gradient_work_under_no_grad(self):
        def refuse(*a, **k):
            raise AssertionError("forward_backward called")
        with mock.patch.object(kdlib.Loss, "forward_backward", refuse):
            for name, xs, fn in every_function():
                if name == "linear_kl_distill":
                    continue          # one C call: checked through compute_grad below
                with self.subTest(name):
                    with torch.no_grad():
                        loss = fn(*xs)
                    self.assertIsNone(loss.grad_fn)
                    with torch.inference_mode():
                        fn(*xs)
                    loss = fn(*[x.detach() for x in xs])   # nothing requires grad
                    self.assertIsNone(loss.grad_fn)
        seen = []
        real = kdlib._linear.linear_kl_distill

        def spy(*a, **k):
            seen.append(k["compute_grad"])
            return real(*a, **k)
        _, xs, fn = every_function()[-1]
        with mock.patch.object(kdlib._linear, "linear_kl_distill", spy):
            with torch.no_grad():
                fn(*xs)
            fn(*xs).backward()
        self.assertEqual(seen, [False, True])


class TorchNative(unittest.TestCase):
    def test_pseudo_labels_int64_named_tuple(self):
        s, t = logits(10, 5), logits(10, 5, seed=1, scale=4.0, grad=False)
        loss, mask, pl = kdt.pseudo_label(s, t, 0.6)
        out = kdt.pseudo_label(s, t, 0.6)
        self.assertIsInstance(out, kdt.PseudoLabelOutput)
        self.assertEqual(out._fields, ("loss", "mask", "pseudo_labels"))
        self.assertEqual(pl.dtype, torch.int64)
        self.assertEqual(mask.dtype, torch.float32)
        self.assertTrue(torch.equal(pl, t.argmax(1)))
        self.assertTrue(torch.equal(mask, (t.softmax(1).max(1).values > 0.6).float()))
        F.cross_entropy(s, pl)               # failed with int32
        torch.eye(5)[pl]
        ref = (F.cross_entropy(s.double(), pl, reduction="none") * mask.double()).mean()
        self.assertAlmostEqual(float(loss), float(ref), places=5)
        self.assertIsInstance(kdt.pseudo_label(s, t, 0.6, return_mask=False), torch.Tensor)
        sw = kdt.strong_weak_consistency(s, t, 0.6, return_mask=True)
        self.assertEqual(sw.pseudo_labels.dtype, torch.int64)

    def test_tensors_for_every_argument(self):
        s, t = logits(8, 4), logits(8, 4, seed=1, grad=False)
        y = torch.randint(0, 4, (8,))
        w64 = torch.rand(8, dtype=torch.float64)
        a = kdt.cross_entropy(s, y, weights=w64, reduction="sum")
        b = (F.cross_entropy(s.double(), y, reduction="none") * w64).sum()
        self.assertAlmostEqual(float(a), float(b), places=4)
        ct = torch.tensor([0.3, 0.9, 0.5, 0.99])
        r1 = kdt.pseudo_label(s, t, class_thresholds=ct)
        r2 = kdt.pseudo_label(s, t, class_thresholds=ct.numpy())
        self.assertTrue(torch.equal(r1.mask, r2.mask))
        t2 = logits(8, 4, seed=2, grad=False)
        tw = torch.tensor([0.25, 0.75])
        a = kdt.kl_distill(s, [t, t2], temperature=2.0, teacher_weights=tw)
        b = kdt.kl_distill(s, 0.25 * t + 0.75 * t2, temperature=2.0)
        self.assertAlmostEqual(float(a), float(b), places=5)
        h, wt, th, twt = logits(8, 6), logits(4, 6), logits(8, 3, grad=False), logits(4, 3, grad=False)
        a = kdt.linear_kl_distill(h, wt, teacher_hidden=th, teacher_weight=twt, temperature=2.0,
                                  weights=torch.ones(8))
        b = kdt.kl_distill(h @ wt.T, th @ twt.T, temperature=2.0)
        self.assertAlmostEqual(float(a), float(b), places=5)

    def test_leading_dimensions_are_flattened(self):
        s, t = logits(2, 3, 5), logits(2, 3, 5, seed=1, scale=3.0, grad=False)
        y = torch.randint(0, 5, (2, 3))
        loss = kdt.kl_distill(s, t, y, temperature=2.0, alpha=0.5, reduction="none")
        self.assertEqual(tuple(loss.shape), (2, 3))
        s2 = s.detach().reshape(6, 5).requires_grad_(True)
        flat = kdt.kl_distill(s2, t.reshape(6, 5), y.reshape(6), temperature=2.0, alpha=0.5,
                              reduction="none")
        self.assertTrue(torch.equal(loss.reshape(6), flat))
        u = torch.rand(2, 3)
        (loss * u).sum().backward()
        (flat * u.reshape(6)).sum().backward()
        self.assertEqual(tuple(s.grad.shape), (2, 3, 5))
        self.assertTrue(torch.equal(s.grad.reshape(6, 5), s2.grad))
        ce = kdt.cross_entropy(s, y)
        self.assertAlmostEqual(float(ce), float(F.cross_entropy(s.reshape(6, 5), y.reshape(6))), places=5)
        loss, mask, pl = kdt.pseudo_label(s, t, 0.5)
        self.assertEqual(tuple(mask.shape), (2, 3))
        self.assertEqual(tuple(pl.shape), (2, 3))
        h = logits(2, 3, 4)
        out = kdt.linear_kl_distill(h, logits(5, 4), None, t, temperature=2.0)
        out.backward()
        self.assertEqual(tuple(h.grad.shape), (2, 3, 4))
        with self.assertRaisesRegex(ValueError, "weight must be 2-D"):   # never flattened
            kdt.linear_kl_distill(h, logits(5, 2, 2), None, t, temperature=2.0)

    def test_other_float_dtypes(self):
        base = logits(12, 6, grad=False)
        t = logits(12, 6, seed=1, grad=False)
        y = torch.randint(0, 6, (12,))
        s32 = base.clone().requires_grad_(True)
        ref = kdt.kl_distill(s32, t, y, 2.0, 0.5)
        ref.backward()
        for dtype, tol in ((torch.float64, 1e-6), (torch.float16, 1e-2), (torch.bfloat16, 5e-2)):
            with self.subTest(dtype=dtype):
                s = base.to(dtype).requires_grad_(True)
                loss = kdt.kl_distill(s, t.to(dtype), y, 2.0, 0.5)
                self.assertEqual(loss.dtype, dtype)
                loss.backward()
                self.assertEqual(s.grad.dtype, dtype)
                self.assertLess(abs(float(loss) - float(ref)), tol * max(1.0, abs(float(ref))))
                self.assertLess(float((s.grad.float() - s32.grad).abs().max()),
                                tol * float(s32.grad.abs().max()) + 1e-6)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            lin = torch.nn.Linear(6, 6)
            z = lin(base)
            self.assertEqual(z.dtype, torch.bfloat16)
            loss = kdt.cross_entropy(z, y)
        loss.backward()
        self.assertEqual(lin.weight.grad.dtype, torch.float32)

    def test_gradcheck_float64(self):
        """gradcheck on float64 inputs computed in float32: a central difference
        with eps = 1e-3 of a float32 loss (rounding ~6e-8 relative, losses of
        order 1) is off by about 6e-8 / 1e-3 = 6e-5, plus the float32
        gradient's own rounding: atol = 1e-3 and rtol = 1e-2 leave a 10x margin
        and still catch any wrong term (errors of order 1e-1 and above)."""
        for name, xs, fn in every_function(n=5, c=3):
            with self.subTest(name):
                xs64 = [x.detach().double().requires_grad_(True) for x in xs]
                self.assertTrue(torch.autograd.gradcheck(fn, xs64, eps=1e-3, atol=1e-3, rtol=1e-2))
        y = torch.randint(0, 4, (5,))
        s = logits(5, 4, dtype=torch.float64)
        self.assertTrue(torch.autograd.gradcheck(
            lambda x: kdt.cross_entropy(x, y, reduction="none"), [s], eps=1e-3, atol=1e-3,
            rtol=1e-2))

    def test_backward_twice_and_scaled_upstream(self):
        s, t = logits(7, 3), logits(7, 3, seed=1, grad=False)
        loss = kdt.kl_distill(s, t, temperature=2.0)
        (3.0 * loss).backward(retain_graph=True)
        g1 = s.grad.clone()
        (3.0 * loss).backward()             # the gradient was scaled in place: recomputed
        self.assertTrue(torch.allclose(s.grad, 2 * g1, rtol=1e-6, atol=0))
        s.grad = None
        kdt.kl_distill(s, t, temperature=2.0).backward()
        self.assertTrue(torch.allclose(3 * s.grad, g1, rtol=1e-6, atol=1e-7))


if __name__ == "__main__":
    unittest.main()
