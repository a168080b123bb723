"""kdlib.torch.EMATeacher(model, alpha) against the Mean Teacher update
written in PyTorch (tllib's EMATeacher), on a model with BatchNorm (float32
running statistics copied, the int64 num_batches_tracked copied), and the
failures of issue 20: numpy-only arguments, int64 buffers, p.data = ..."""
import copy
import os
import tempfile
import unittest

import torch

import kdlib.torch as kdt


def model(seed=0):
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5), torch.nn.ReLU(),
                               torch.nn.Linear(5, 3))


def train_step(m, opt, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(16, 6, generator=g)
    m.train()
    opt.zero_grad()
    m(x).pow(2).mean().backward()
    opt.step()


class EMATeacherModule(unittest.TestCase):
    def test_matches_the_pytorch_update(self):
        m = model()
        ref = copy.deepcopy(m)
        ema = kdt.EMATeacher(m, alpha=0.9, warmup=False)
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        for step in range(5):
            train_step(m, opt, step)
            ema.update()
            with torch.no_grad():
                for r, p in zip(ref.parameters(), m.parameters()):
                    r.mul_(0.9).add_(0.1 * p)
                for r, b in zip(ref.buffers(), m.buffers()):
                    r.copy_(b)
        self.assertEqual(ema.step, 5)
        for (name, t), r in zip(ema.teacher.state_dict().items(), ref.state_dict().values()):
            self.assertEqual(t.dtype, r.dtype, name)
            self.assertTrue(torch.allclose(t, r, rtol=1e-6, atol=1e-7), name)
        self.assertEqual(int(ema.teacher[1].num_batches_tracked), 5)
        x = torch.randn(4, 6)
        ref.eval()
        self.assertTrue(torch.allclose(ema(x), ref(x), rtol=1e-5, atol=1e-6))
        self.assertIsNone(ema(x).grad_fn)

    def test_replaced_storage_is_followed(self):
        m = torch.nn.Linear(3, 2)
        ema = kdt.EMATeacher(m, alpha=0.5, warmup=False)
        with torch.no_grad():
            m.weight.data = torch.full((2, 3), 4.0)     # new storage
            m.bias.data = torch.zeros(2)
        w0 = ema.teacher.weight.clone()
        ema.update()
        self.assertTrue(torch.allclose(ema.teacher.weight, 0.5 * w0 + 2.0))
        m.weight.data = torch.zeros(3, 3)
        with self.assertRaisesRegex(ValueError, "weight changed shape"):
            ema.update()
        with self.assertRaisesRegex(TypeError, "float32"):
            kdt.EMATeacher(torch.nn.Linear(3, 2).double())

    def test_swap_copy_to_state_dict_and_state_file(self):
        m = model(1)
        ema = kdt.EMATeacher(m, alpha=0.8, warmup=True)
        opt = torch.optim.SGD(m.parameters(), lr=0.2)
        for step in range(3):
            train_step(m, opt, step)
            ema.update()
        student = copy.deepcopy(m.state_dict())
        teacher = copy.deepcopy(ema.teacher.state_dict())
        ema.swap()
        self.assertTrue(torch.equal(m[0].weight, teacher["0.weight"]))
        self.assertTrue(torch.equal(ema.teacher[0].weight, student["0.weight"]))
        ema.swap()
        self.assertTrue(torch.equal(m[0].weight, student["0.weight"]))
        # state_dict, int64 buffers included, into a fresh EMATeacher
        other = kdt.EMATeacher(model(2), alpha=0.8)
        other.load_state_dict(ema.state_dict())
        for k, v in ema.teacher.state_dict().items():
            self.assertTrue(torch.equal(other.teacher.state_dict()[k], v), k)
        # the crash-safe state file keeps the warm-up step too
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "teacher.kdema")
            ema.save(path)
            third = kdt.EMATeacher(model(3), alpha=0.8)
            third.load(path)
            self.assertEqual(third.step, 3)
            self.assertTrue(torch.equal(third.teacher[0].weight, ema.teacher[0].weight))
        target = model(4)
        ema.copy_to(target)
        self.assertTrue(torch.equal(target[3].bias, ema.teacher[3].bias))
        ema.copy_to()
        self.assertTrue(torch.equal(m[0].weight, ema.teacher[0].weight))


if __name__ == "__main__":
    unittest.main()
