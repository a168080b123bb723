"""Fused linear + KL distillation and the split batch statistics of class
balance / MCC (data-parallel), against the single-call results and PyTorch."""
import unittest

import numpy as np
import torch
import torch.nn.functional as F

import kdlib
import kdlib.torch as kdt
from kdlib import _lib

from .test_losses import D, close, ref_kl_distill, ref_mcc, ref_class_balance

C = kdlib.losses_constants


@unittest.skipUnless(_lib.has("kd_linear_kl_distill"), "library without kd_linear_kl_distill")
class LinearKLDistill(unittest.TestCase):
    def test_against_materialised_logits(self):
        rng = np.random.default_rng(3)
        n, d, c = 37, 16, 300
        hidden = rng.standard_normal((n, d)).astype(np.float32)
        weight = (rng.standard_normal((c, d)) * 0.3).astype(np.float32)
        bias = rng.standard_normal(c).astype(np.float32)
        teacher = (rng.standard_normal((n, c)) * 2).astype(np.float32)
        y = rng.integers(0, c, n).astype(np.int32)
        y[::5] = -100
        for chunk in (0, 7):
            r = kdlib.linear_kl_distill(hidden, weight, bias, teacher, y, temperature=2.0, alpha=0.8,
                                        chunk_rows=chunk)
            th, tw, tb = (torch.tensor(a, dtype=D, requires_grad=True) for a in (hidden, weight, bias))
            ref = ref_kl_distill(th @ tw.t() + tb, torch.tensor(teacher, dtype=D),
                                 torch.tensor(y, dtype=torch.long), 2.0, 0.8, 0.2, "mean")
            ref.backward()
            close(self, r.loss, ref.item(), 1e-4, 1e-5, "loss")
            close(self, r.grad_hidden, th.grad.numpy(), 1e-3, 1e-5, "grad hidden")
            close(self, r.grad_weight, tw.grad.numpy(), 1e-3, 1e-5, "grad weight")
            close(self, r.grad_bias, tb.grad.numpy(), 1e-3, 1e-5, "grad bias")
        self.assertGreaterEqual(kdlib.default_chunk_rows(c), 1)

    def test_teacher_as_hidden_states_and_torch_wrapper(self):
        rng = np.random.default_rng(4)
        n, d, dt, c = 10, 8, 5, 50
        h = torch.tensor(rng.standard_normal((n, d)), dtype=torch.float32, requires_grad=True)
        w = torch.tensor(rng.standard_normal((c, d)) * 0.3, dtype=torch.float32, requires_grad=True)
        th = rng.standard_normal((n, dt)).astype(np.float32)
        tw = rng.standard_normal((c, dt)).astype(np.float32)
        r = kdlib.linear_kl_distill(h.detach().numpy(), w.detach().numpy(), teacher_hidden=th,
                                    teacher_weight=tw, temperature=3.0)
        r2 = kdlib.linear_kl_distill(h.detach().numpy(), w.detach().numpy(), teacher=th @ tw.T,
                                     temperature=3.0)
        close(self, r.loss, r2.loss, 1e-5, 1e-6)
        loss = kdt.linear_kl_distill(h, w, None, torch.tensor(th @ tw.T), temperature=3.0)
        loss.backward()
        h64, w64 = h.detach().double().requires_grad_(), w.detach().double().requires_grad_()
        ref = ref_kl_distill(h64 @ w64.t(), torch.tensor(th @ tw.T, dtype=D), None, 3.0, 1.0, 0.0, "mean")
        ref.backward()
        close(self, loss.item(), ref.item(), 1e-4, 1e-5)
        close(self, h.grad.numpy(), h64.grad.numpy(), 1e-3, 1e-5)
        close(self, w.grad.numpy(), w64.grad.numpy(), 1e-3, 1e-5)


@unittest.skipUnless(_lib.has("kd_loss_finish"), "library without the split statistics API")
class SplitStatistics(unittest.TestCase):
    def test_two_ranks_equal_one_process(self):
        rng = np.random.default_rng(5)
        n, c = 40, 6
        z = (rng.standard_normal((n, c)) * 2).astype(np.float32)
        for kind, ref_fn in [(C.MCC, lambda t: ref_mcc(t, 2.5)),
                             (C.CLASS_BALANCE, lambda t: ref_class_balance(F.softmax(t, 1)))]:
            parts = [z[:15], z[15:]]
            handles, grads, stats = [], [], []
            for p in parts:
                h = kdlib.Loss(kind, c)
                if kind == C.MCC:
                    h.set(C.PARAM_TEMPERATURE, 2.5)
                h.bind_matrix(C.ARG_STUDENT, p)
                g = np.zeros_like(p)
                h.bind_output(C.ARG_GRAD_STUDENT, g)
                stats.append(h.local_stats(p.shape[0]))
                handles.append(h)
                grads.append(g)
            total = stats[0] + stats[1]                      # the all-reduce (SUM)
            losses = [h.finish(p.shape[0], total) for h, p in zip(handles, parts)]
            tz = torch.tensor(z, dtype=D, requires_grad=True)
            ref = ref_fn(tz)
            ref.backward()
            for v in losses:
                close(self, v, ref.item(), 1e-4, 1e-6, "loss")
            close(self, np.concatenate(grads), tz.grad.numpy(), 1e-3, 1e-6, "grad")
            self.assertEqual(handles[0].stats_size(), c * c + 2 if kind == C.MCC else c + 1)
            with self.assertRaises(ValueError):
                handles[0].finish(15, total[:-1])
            for h in handles:
                h.close()


if __name__ == "__main__":
    unittest.main()
