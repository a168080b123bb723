"""docs/migration.md's kdlib code next to the Liger / tllib code it
replaces: the Liger unfused losses against their definitions (float64), and
the EMA teacher and threshold-module snippets run as written."""
import os
import tempfile
import unittest

import torch
import torch.nn.functional as F

import kdlib.torch as kdt


def pair(n=16, c=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, c, generator=g) * 2), (torch.randn(n, c, generator=g) * 2)


class Liger(unittest.TestCase):
    def test_cross_entropy_kl_and_jsd(self):
        s, t = pair()
        y = torch.randint(0, 9, (16,))
        s64, t64 = s.double(), t.double()
        ce = F.cross_entropy(s64, y, label_smoothing=0.1)          # LigerCrossEntropyLoss
        self.assertAlmostEqual(kdt.cross_entropy(s, y, label_smoothing=0.1).item(), ce.item(),
                               places=5)
        kl = F.kl_div(F.log_softmax(s64, 1), F.softmax(t64, 1), reduction="batchmean")
        got = kdt.KLDistillLoss(temperature=1.0, t2_scaling=False)(s, t)
        self.assertAlmostEqual(got.item(), kl.item(), places=5)
        p, q = F.softmax(t64, 1), F.softmax(s64, 1)                  # LigerJSD(beta=0.5)
        m = 0.5 * (p + q)
        jsd = (0.5 * (p * (p / m).log()).sum(1) + 0.5 * (q * (q / m).log()).sum(1)).mean()
        got = kdt.KLDistillLoss(divergence="jsd", jsd_beta=0.5)(s, t)
        self.assertAlmostEqual(got.item(), jsd.item(), places=5)


class Snippets(unittest.TestCase):
    def test_ema_teacher(self):
        torch.manual_seed(0)
        model = torch.nn.Linear(4, 3)
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        teacher = kdt.EMATeacher(model, alpha=0.999)
        x = torch.randn(8, 4)
        model(x).sum().backward()
        opt.step()
        teacher.update()
        y_t = teacher(x)
        self.assertEqual(y_t.shape, (8, 3))
        with tempfile.TemporaryDirectory() as d:
            teacher.save(os.path.join(d, "ema.state"))

    def test_threshold_modules(self):
        num_classes, unlabeled = 5, 40
        y_u, y_u_strong = pair(12, num_classes)
        idx_u = torch.arange(12)
        fm = kdt.FlexMatchThreshold(unlabeled, num_classes, threshold=0.95, warmup=True)
        mask, pseudo_labels = fm(y_u, idx_u)
        fr = kdt.FreeMatchThreshold(num_classes, momentum=0.999)
        probs_x_ulb_w = torch.softmax(y_u, 1)
        mask, pseudo_labels = fr(probs_x_ulb_w, inputs="probabilities")
        sm = kdt.SoftMatchWeighting(num_classes, momentum=0.999, n_sigma=2.0)
        weights, pseudo_labels = sm(y_u)
        loss = (F.cross_entropy(y_u_strong, pseudo_labels, reduction="none") * mask).mean()
        self.assertTrue(torch.isfinite(loss))
        self.assertTrue(torch.equal(pseudo_labels, y_u.argmax(1)))


if __name__ == "__main__":
    unittest.main()
