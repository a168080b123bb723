"""kdlib.torch nn.Module classes against their PyTorch expressions (float64
autograd of the tllib / timm / torchdistill definitions): loss and every
input gradient, for each module."""
import unittest

import torch
import torch.nn.functional as F

import kdlib.torch as kdt

from .test_losses import ref_mcc

D = torch.float64


def leaf(*shape, scale=2.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g, dtype=D) * scale).float().requires_grad_(True)


def as64(x):
    return x.detach().to(D).requires_grad_(x.requires_grad)


class Modules(unittest.TestCase):
    def check(self, module, ref_fn, inputs, grads=None, rtol=1e-4, atol=2e-5, loss_of=lambda r: r):
        """module(*inputs) against ref_fn(*float64 copies); gradients of the
        inputs at positions `grads` (default: those requiring grad)."""
        ins64 = [as64(x) if isinstance(x, torch.Tensor) and x.is_floating_point() else x
                 for x in inputs]
        got = loss_of(module(*inputs))
        want = ref_fn(*ins64)
        self.assertEqual(got.shape, want.shape)
        self.assertTrue(torch.allclose(got.double(), want.detach(), rtol=rtol, atol=atol),
                        "%s: %s vs %s" % (module, got, want))
        got.sum().backward()
        want.sum().backward()
        positions = grads if grads is not None else [
            k for k, x in enumerate(inputs) if isinstance(x, torch.Tensor) and x.requires_grad]
        self.assertTrue(positions)
        for k in positions:
            self.assertIsNotNone(inputs[k].grad, "input %d of %s got no gradient" % (k, module))
            self.assertTrue(torch.allclose(inputs[k].grad.double(), ins64[k].grad, rtol=rtol,
                                           atol=atol),
                            "%s: gradient of input %d" % (module, k))

    def test_kl_distill_loss(self):
        s, t = leaf(16, 7), leaf(16, 7, seed=1, scale=3.0).detach()
        y = torch.randint(0, 7, (16,))
        T, a = 4.0, 0.9

        def ref(s, t, y):     # torchdistill KDLoss
            soft = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean")
            return a * T * T * soft + (1 - a) * F.cross_entropy(s, y)
        self.check(kdt.KLDistillLoss(T, a), ref, [s, t, y])
        self.assertIn("temperature=4.0", repr(kdt.KLDistillLoss(T, a)))

    def test_torchdistill_alpha_convention(self):
        """docs/migration.md: torchdistill KDLoss(T, alpha=a) = kdlib alpha 1 - a;
        without targets torchdistill's bare KL = t2_scaling=False."""
        s, t = leaf(10, 6), leaf(10, 6, seed=1).detach()
        y = torch.randint(0, 6, (10,))
        T, a = 4.0, 0.1

        def torchdistill(s, t, y=None):
            soft = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean")
            return soft if y is None else a * F.cross_entropy(s, y) + (1 - a) * T * T * soft
        self.check(kdt.KLDistillLoss(T, 1 - a), torchdistill, [s, t, y])
        s.grad = None
        self.check(kdt.KLDistillLoss(T, soft_weight=1 - a, hard_weight=a), torchdistill, [s, t, y])
        s.grad = None
        self.check(kdt.KLDistillLoss(T, t2_scaling=False), torchdistill, [s, t])

    def test_soft_target_cross_entropy(self):
        s = leaf(12, 5)
        q = torch.softmax(leaf(12, 5, seed=2).detach(), 1)
        self.check(kdt.SoftTargetCrossEntropy(),
                   lambda s, q: torch.sum(-q * F.log_softmax(s, dim=-1), dim=-1).mean(), [s, q])

    def test_logit_mse(self):
        s, t = leaf(9, 4), leaf(9, 4, seed=3).detach()
        self.check(kdt.LogitMSELoss(), lambda s, t: F.mse_loss(s, t), [s, t])

    def test_pseudo_label_loss(self):
        s, t = leaf(30, 6), leaf(30, 6, seed=4, scale=4.0)

        def ref(y, y_target):     # tllib ConfidenceBasedSelfTrainingLoss
            confidence, pseudo_labels = F.softmax(y_target.detach().float(), dim=1).max(dim=1)
            mask = (confidence > 0.7).to(D)
            return (F.cross_entropy(y, pseudo_labels, reduction="none") * mask).mean()
        module = kdt.PseudoLabelLoss(0.7)
        self.check(module, ref, [s, t], grads=[0], loss_of=lambda r: r.loss)
        self.assertIsNone(t.grad)
        loss, mask, pl = module(s, t)
        self.assertEqual(pl.dtype, torch.int64)
        self.assertGreater(float(mask.sum()), 0)
        self.assertLess(float(mask.sum()), 30)

    def test_strong_weak_consistency_loss(self):
        s, w = leaf(30, 6), leaf(30, 6, seed=5, scale=4.0).detach()

        def ref(y_strong, y_weak):    # tllib StrongWeakConsistencyLoss
            confidence, _ = F.softmax(y_weak.float(), dim=1).max(dim=1)
            mask = (confidence > 0.7).to(D)
            kl = F.kl_div(F.log_softmax(y_strong / 0.85, 1), F.softmax(y_weak, 1),
                          reduction="none").sum(1)
            return (kl * mask).sum() / max(mask.sum().item(), 1.0)
        self.check(kdt.StrongWeakConsistencyLoss(0.7, 0.85), ref, [s, w])

    def test_consistency_loss(self):
        a, b = leaf(10, 4), leaf(10, 4, seed=6)
        self.check(kdt.ConsistencyLoss("l2"),
                   lambda a, b: ((F.softmax(a, 1) - F.softmax(b, 1)) ** 2).sum(1).mean(), [a, b])
        pa = torch.softmax(leaf(10, 4, seed=7).detach(), 1).requires_grad_(True)
        pb = torch.softmax(leaf(10, 4, seed=8).detach(), 1).requires_grad_(True)
        self.check(kdt.ConsistencyLoss("l2", inputs="probabilities"),
                   lambda a, b: ((a - b) ** 2).sum(1).mean(), [pa, pb])

    def test_class_balance_loss(self):
        p = torch.softmax(leaf(20, 5).detach(), 1).requires_grad_(True)

        def ref(p):           # tllib ClassBalanceLoss on probabilities
            return F.binary_cross_entropy(p.mean(0), torch.full((5,), 0.2, dtype=D))
        self.check(kdt.ClassBalanceLoss(5, inputs="probabilities"), ref, [p])
        z = leaf(20, 5, seed=1)
        self.check(kdt.ClassBalanceLoss(inputs="logits"), lambda z: ref(F.softmax(z, 1)), [z])
        with self.assertRaisesRegex(TypeError, "inputs="):
            kdt.ClassBalanceLoss(5)
        with self.assertRaisesRegex(ValueError, "num_classes=4"):
            kdt.ClassBalanceLoss(4, inputs="logits")(z)

    def test_minimum_class_confusion_loss(self):
        z = leaf(24, 5)
        T = 2.5

        self.check(kdt.MinimumClassConfusionLoss(T), lambda z: ref_mcc(z, T), [z])   # tllib's formula

    def test_entropy_loss(self):
        # -(F.softmax(s/T,1) * F.log_softmax(s/T,1)).sum(1), its mean / sum, and autograd
        def ref(s, T, w=None, red="mean"):
            h = -(F.softmax(s / T, 1) * F.log_softmax(s / T, 1)).sum(1)
            h = h if w is None else h * w
            return h.mean() if red == "mean" else (h.sum() if red == "sum" else h)
        for n, c, T, scale in [(64, 10, 1.0, 2.0), (33, 7, 0.5, 3.0), (1, 2, 2.0, 1.0),
                               (9, 300, 1.0, 4.0), (6, 5, 1.0, 40.0)]:
            z = leaf(n, c, scale=scale, seed=n)
            for red in ("mean", "sum", "none"):
                self.check(kdt.EntropyLoss(T, red), lambda s: ref(s, T, red=red), [z])
                z.grad = None
            w = (torch.rand(n, generator=torch.Generator().manual_seed(1)) > 0.3).float()
            self.check(kdt.EntropyLoss(T), lambda s, w: ref(s, T, w), [z, w], grads=[0])
            z.grad = None
            self.check(lambda s: kdt.entropy(s, T, reduction="sum"),
                       lambda s: ref(s, T, red="sum"), [z])
            z.grad = None

    def test_worst_case_estimation_loss(self):
        yl, yla = leaf(8, 5).detach(), leaf(8, 5, seed=1)
        yu, yua = leaf(11, 5, seed=2).detach(), leaf(11, 5, seed=3)

        def ref(y_l, y_l_adv, y_u, y_u_adv):   # tllib WorstCaseEstimationLoss
            _, pl = y_l.max(dim=1)
            loss_l = 2.0 * F.cross_entropy(y_l_adv, pl)
            _, pu = y_u.max(dim=1)
            shifted = torch.log(torch.clamp(1.0 - F.softmax(y_u_adv, dim=1) + 1e-6, max=1.0))
            return loss_l + F.nll_loss(shifted, pu)
        self.check(kdt.WorstCaseEstimationLoss(2.0), ref, [yl, yla, yu, yua])

    def test_fused_linear_kl_distill_loss(self):
        h, w, b = leaf(14, 6), leaf(5, 6, seed=1, scale=0.5), leaf(5, seed=2, scale=0.5)
        th, tw = leaf(14, 3, seed=3).detach(), leaf(5, 3, seed=4).detach()
        y = torch.randint(0, 5, (14,))
        T, a = 2.0, 0.6

        def ref(h, w, th, tw, y, b):
            s, t = h @ w.T + b, th @ tw.T
            soft = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t / T, 1), reduction="batchmean")
            return a * T * T * soft + (1 - a) * F.cross_entropy(s, y)
        module = kdt.FusedLinearKLDistillLoss(T, a)
        self.check(lambda h, w, th, tw, y, b: module(h, w, th, tw, y, student_bias=b), ref,
                   [h, w, th, tw, y, b], grads=[0, 1, 5])

        def ref_jsd(h, w, t):
            s = h @ w.T
            p, q = F.softmax(t / T, 1), F.softmax(s / T, 1)
            m = 0.5 * (p + q)
            return T * T * 0.5 * ((p * (p / m).log()).sum(1) + (q * (q / m).log()).sum(1)).mean()
        h.grad = w.grad = None
        t = th @ tw.T
        jsd = kdt.FusedLinearKLDistillLoss(T, divergence="jsd", jsd_beta=0.5)
        self.check(lambda h, w, t: jsd(h, w, teacher_logits=t), ref_jsd, [h, w, t], grads=[0, 1])

    def test_modules_in_a_training_step(self):
        torch.manual_seed(0)
        net = torch.nn.Linear(8, 4)
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        crit = kdt.KLDistillLoss(temperature=2.0, alpha=0.5)
        x, t, y = torch.randn(32, 8), torch.randn(32, 4), torch.randint(0, 4, (32,))
        first = None
        for _ in range(20):
            opt.zero_grad()
            loss = crit(net(x), t, y)
            loss.backward()
            opt.step()
            first = first if first is not None else loss.item()
        self.assertLess(loss.item(), first)
        self.assertIsInstance(crit, torch.nn.Module)


if __name__ == "__main__":
    unittest.main()
