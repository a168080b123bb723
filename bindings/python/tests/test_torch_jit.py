"""TorchScript and kdlib.torch: torch.jit.trace through a kdlib loss or
threshold module raises RuntimeError (without the check the trace silently
holds the example inputs' loss as a constant: 0.928 for every later input in
the issue's reproduction, and torch.jit.save fails on the Python call); the
documented path (trace the model alone, save, load, call kdlib.torch on its
outputs) gives the eager loss and gradients."""
import io
import unittest

import torch

import kdlib
import kdlib.torch as kdt


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.lin = torch.nn.Linear(4, 3)

    def forward(self, x):
        return self.lin(x)


class WithLoss(Net):
    def forward(self, x, t):
        return kdt.kl_distill(self.lin(x), t, temperature=2.0)


class Tracing(unittest.TestCase):
    def assert_refused(self, fn, args):
        for grad in (True, False):
            with torch.set_grad_enabled(grad), self.assertRaises(RuntimeError) as cm:
                torch.jit.trace(fn, args, check_trace=False)
            self.assertIn("cannot be traced by torch.jit.trace", str(cm.exception))
            self.assertIn("README", str(cm.exception))

    def test_tracing_a_loss_raises(self):
        x, t = torch.randn(5, 4), torch.randn(5, 3)
        self.assert_refused(WithLoss(), (x, t))
        self.assert_refused(lambda s, y: kdt.cross_entropy(s, y), (torch.randn(5, 3),
                                                                    torch.tensor([0, 1, 2, 0, 1])))
        self.assert_refused(lambda s, w: kdt.pseudo_label(s, w, 0.5).loss,
                            (torch.randn(5, 3), torch.randn(5, 3)))
        self.assert_refused(lambda z: kdt.mcc(z), (torch.randn(5, 3),))
        self.assert_refused(kdt.MinimumClassConfusionLoss(), (torch.randn(5, 3),))

    def test_tracing_a_threshold_module_or_split_loss_raises(self):
        self.assert_refused(kdt.FreeMatchThreshold(3), (torch.randn(5, 3),))
        self.assert_refused(lambda z: kdlib.torch_split_batch_loss("mcc", z), (torch.randn(5, 3),))

    def test_the_message_is_raised_at_trace_time_only(self):
        s = torch.randn(5, 3, requires_grad=True)
        kdt.kl_distill(s, torch.randn(5, 3)).backward()          # eager: no error
        self.assertIsNotNone(s.grad)

    def test_trace_the_model_alone_then_call_kdlib(self):
        net, x, t = Net(), torch.randn(6, 4), torch.randn(6, 3)
        buf = io.BytesIO()
        torch.jit.save(torch.jit.trace(net, (x,)), buf)
        buf.seek(0)
        loaded = torch.jit.load(buf)
        x2 = torch.randn(6, 4)
        got = kdt.kl_distill(loaded(x2), t, temperature=2.0)
        want = WithLoss()(x2, t)
        self.assertAlmostEqual(got.item(), want.item(), places=6)
        got.backward()
        eager = WithLoss()
        eager(x2, t).backward()
        self.assertTrue(torch.allclose(loaded.lin.weight.grad, eager.lin.weight.grad, atol=1e-6))


if __name__ == "__main__":
    unittest.main()
