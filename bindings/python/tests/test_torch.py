"""kdlib.torch autograd wrappers: gradients against torch autograd of the
reference definitions (float64), with non-trivial upstream gradients, a
central finite-difference check of each wrapper's own gradient (gradcheck
needs float64, libkd is float32, so the check is done numerically here),
which inputs receive a gradient, and use inside a training loop."""
import unittest

import numpy as np
import torch
import torch.nn.functional as F

import kdlib
import kdlib.torch as kdt

from .test_losses import (D, close, ref_class_balance, ref_consistency, ref_kl_distill, ref_mask,
                          ref_mcc, ref_pseudo_label, ref_strong_weak, ref_worst_case, ref_logit_mse,
                          ref_cross_entropy, soft_ce)


def leaf32(rng, n, c, scale=2.0):
    return torch.tensor(rng.standard_normal((n, c)) * scale, dtype=torch.float32, requires_grad=True)


def leaf64(x):
    return x.detach().to(D).requires_grad_(True)


class Wrappers(unittest.TestCase):
    def setUp(self):
        self.rng = np.random.default_rng(7)
        torch.manual_seed(7)

    def compare(self, loss32, ref64, pairs, rtol=1e-4, atol=1e-5, what=""):
        """Backpropagate loss32 . u and ref64 . u with the same random u."""
        u = torch.rand(loss32.shape, dtype=torch.float64) + 0.5
        close(self, loss32.detach().numpy(), ref64.detach().numpy(), 3e-5, 3e-6, what + " loss")
        (loss32 * u.float()).sum().backward()
        (ref64 * u).sum().backward()
        for a, b in pairs:
            self.assertIsNotNone(a.grad, what)
            close(self, a.grad.numpy(), b.grad.numpy(), rtol, atol, what + " grad")

    def fd_check(self, fn, x, eps=1e-2, trials=3, rtol=2e-2, atol=2e-4):
        """Directional central differences of a scalar fn at float32 x."""
        x = x.detach().clone().requires_grad_(True)
        fn(x).sum().backward()
        g = x.grad.double()
        for _ in range(trials):
            d = torch.randn_like(x)
            with torch.no_grad():
                fp = fn(x + eps * d).sum().double()
                fm = fn(x - eps * d).sum().double()
            num = ((fp - fm) / (2 * eps)).item()
            ana = (g * d.double()).sum().item()
            self.assertTrue(abs(num - ana) <= atol + rtol * max(abs(num), abs(ana)),
                            "finite difference %g vs gradient %g" % (num, ana))

    def test_kl_distill_issue_example(self):
        s, t = leaf32(self.rng, 16, 10), leaf32(self.rng, 16, 10, 3.0).detach()
        y = torch.randint(0, 10, (16,))
        loss = kdt.kl_distill(s, t, y, temperature=4, alpha=0.9)
        self.assertEqual(loss.dim(), 0)
        s64 = leaf64(s)
        ref = ref_kl_distill(s64, t.detach().to(D), y, 4.0, 0.9, 0.1, "mean")
        self.compare(loss, ref, [(s, s64)])
        self.assertIsNone(t.grad, "the teacher gets no gradient")

    def test_kl_distill_none_reduction_teacher_list_and_fd(self):
        s = leaf32(self.rng, 12, 6)
        ts = [torch.randn(12, 6), torch.randn(12, 6)]
        loss = kdt.kl_distill(s, ts, None, temperature=2.0, reduction="none")
        self.assertEqual(tuple(loss.shape), (12,))
        s64 = leaf64(s)
        ref = ref_kl_distill(s64, (ts[0].double() + ts[1].double()) / 2, None, 2.0, 1.0, 0.0, "none")
        self.compare(loss, ref, [(s, s64)])
        self.fd_check(lambda x: kdt.kl_distill(x, ts, temperature=2.0, reduction="none"), s)

    def test_cross_entropy_soft_cross_entropy_logit_mse(self):
        s = leaf32(self.rng, 20, 5)
        y = torch.randint(0, 5, (20,))
        y[3] = -100
        s64 = leaf64(s)
        self.compare(kdt.cross_entropy(s, y, 0.1, reduction="sum"),
                     ref_cross_entropy(s64, y, 0.1, -100, "sum"), [(s, s64)], what="ce")
        s.grad = None
        q = torch.softmax(torch.randn(20, 5), 1)
        s64 = leaf64(s)
        self.compare(kdt.soft_cross_entropy(s, q), soft_ce(s64, q.double()).mean(), [(s, s64)],
                     what="soft ce")
        s.grad = None
        t = torch.randn(20, 5)
        s64 = leaf64(s)
        self.compare(kdt.logit_mse(s, t), ref_logit_mse(s64, t.detach().double(), None, 1.0, 0.0, "mean"),
                     [(s, s64)], what="mse")
        self.assertIsNone(t.grad)
        self.fd_check(lambda x: kdt.cross_entropy(x, y, 0.1), s)
        self.fd_check(lambda x: kdt.soft_cross_entropy(x, teacher=t.detach(), temperature=2.0), s)

    def test_pseudo_label_and_strong_weak_with_masks(self):
        s, t = leaf32(self.rng, 40, 6), leaf32(self.rng, 40, 6, 4.0)
        loss, mask, pl = kdt.pseudo_label(s, t, 0.6, return_mask=True)
        self.assertFalse(mask.requires_grad)
        rmask, rpl = ref_mask(t.detach().numpy(), 0.6)
        self.assertTrue(torch.equal(mask.double(), rmask) and torch.equal(pl.long(), rpl))
        s64 = leaf64(s)
        self.compare(loss, ref_pseudo_label(s64, rpl, rmask, "mean"), [(s, s64)], what="pseudo label")
        self.assertIsNone(t.grad)
        s.grad = None
        loss = kdt.strong_weak_consistency(s, t, 0.7, 0.85)
        rmask, _ = ref_mask(t.detach().numpy(), 0.7)
        s64 = leaf64(s)
        self.compare(loss, ref_strong_weak(s64, t.detach().double(), rmask, 0.85, "mean"), [(s, s64)],
                     what="strong weak")
        self.assertIsNone(t.grad)
        self.fd_check(lambda x: kdt.strong_weak_consistency(x, t.detach(), 0.7, 0.85), s)

    def test_consistency_gradients_to_both_inputs(self):
        for dist in ("l2", "kl", "js"):
            for red in ("mean", "none"):
                a, b = leaf32(self.rng, 10, 4), leaf32(self.rng, 10, 4)
                mask = torch.tensor((self.rng.uniform(size=10) > 0.3).astype(np.float32))
                loss = kdt.consistency(a, b, dist, mask=mask, reduction=red)
                a64, b64 = leaf64(a), leaf64(b)
                ref = ref_consistency(a64, b64, True, dist, mask.double(), red)
                self.compare(loss, ref, [(a, a64), (b, b64)], what=dist + " " + red)
        b0 = torch.randn(10, 4)
        self.fd_check(lambda x: kdt.consistency(x, b0, "js"), a)
        a0 = torch.randn(10, 4)
        self.fd_check(lambda x: kdt.consistency(a0, x, "kl"), b)

    def test_only_second_input_requires_grad(self):
        a, b = torch.randn(6, 3), leaf32(self.rng, 6, 3)
        kdt.consistency(a, b).backward()
        a64, b64 = a.double(), leaf64(b)
        ref_consistency(a64, b64, True, "l2", None, "mean").backward()
        close(self, b.grad.numpy(), b64.grad.numpy(), 1e-4, 1e-6)

    def test_class_balance_mcc_worst_case(self):
        z = leaf32(self.rng, 30, 5)
        z64 = leaf64(z)
        self.compare(kdt.class_balance(z, "logits"), ref_class_balance(F.softmax(z64, 1)), [(z, z64)], what="cb")
        z.grad = None
        z64 = leaf64(z)
        self.compare(kdt.mcc(z, 2.5), ref_mcc(z64, 2.5), [(z, z64)], rtol=1e-3, what="mcc")
        self.fd_check(lambda x: kdt.mcc(x, 2.5), z, atol=1e-3)
        lm, la = leaf32(self.rng, 8, 5), leaf32(self.rng, 8, 5)
        um, ua = leaf32(self.rng, 12, 5), leaf32(self.rng, 12, 5)
        la64, ua64 = leaf64(la), leaf64(ua)
        self.compare(kdt.worst_case_estimation(lm, la, um, ua, 2.0),
                     ref_worst_case(lm.detach().double(), la64, um.detach().double(), ua64, 2.0),
                     [(la, la64), (ua, ua64)], what="worst case")
        self.assertIsNone(lm.grad)
        self.assertIsNone(um.grad)

    def test_strided_and_transposed_tensors(self):
        base = torch.randn(8, 12)
        s = base[:, :5].clone().requires_grad_(True)
        t_strided = base[:, 5:10]                 # row stride 12: passed without a copy
        t_transposed = torch.randn(5, 8).t()      # copied with .contiguous()
        for t in (t_strided, t_transposed):
            s.grad = None
            loss = kdt.kl_distill(s, t, temperature=2.0)
            s64 = leaf64(s)
            self.compare(loss, ref_kl_distill(s64, t.double(), None, 2.0, 1.0, 0.0, "mean"), [(s, s64)])

    def test_non_leaf_student_in_training_loop(self):
        torch.manual_seed(0)
        x = torch.randn(256, 20)
        teacher = torch.nn.Linear(20, 4)
        with torch.no_grad():
            t_logits = teacher(x) * 3
        y = t_logits.argmax(1)
        student = torch.nn.Linear(20, 4)
        opt = torch.optim.SGD(student.parameters(), lr=0.5)
        losses = []
        for _ in range(60):
            opt.zero_grad()
            loss = kdt.kl_distill(student(x), t_logits, y, temperature=4, alpha=0.9)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        self.assertLess(losses[-1], 0.3 * losses[0])

    def test_bad_tensors(self):
        s = torch.randn(4, 3, dtype=torch.complex64)
        with self.assertRaisesRegex(TypeError, "student must be a real tensor"):
            kdt.kl_distill(s, s.real)
        with self.assertRaisesRegex(ValueError, "teacher must have shape"):
            kdt.kl_distill(torch.randn(4, 3), torch.randn(4, 2))


if __name__ == "__main__":
    unittest.main()
