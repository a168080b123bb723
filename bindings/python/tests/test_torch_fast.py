"""kdlib.torch *_forward_backward (the no-autograd fast path): the loss and
gradient equal the autograd functions' bit for bit (the same C call), the
manual logits.backward(grad) reaches the parameters as autograd does, and
the inputs it does not convert are refused clearly."""
import ctypes
import unittest

import torch

import kdlib
import kdlib.torch as kdt


def data(n=37, c=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(n, c, generator=g) * 3
    t = torch.randn(n, c, generator=g) * 3
    y = torch.randint(0, c, (n,), generator=g)
    return s, t, y


def autograd(fn, s):
    x = s.detach().clone().requires_grad_(True)
    loss = fn(x)
    loss.sum().backward()
    return loss.detach(), x.grad


CASES = [
    ("kl_distill", lambda s, t, y: kdt.kl_distill_forward_backward(s, t, y, 4.0, 0.9),
     lambda s, t, y: (lambda x: kdt.kl_distill(x, t, y, temperature=4.0, alpha=0.9))),
    ("kl_distill no labels, sum",
     lambda s, t, y: kdt.kl_distill_forward_backward(s, t, None, 2.0, reduction="sum"),
     lambda s, t, y: (lambda x: kdt.kl_distill(x, t, None, 2.0, reduction="sum"))),
    ("kl_distill none", lambda s, t, y: kdt.kl_distill_forward_backward(s, t, y, 2.0, 0.5,
                                                                        "none"),
     lambda s, t, y: (lambda x: kdt.kl_distill(x, t, y, 2.0, 0.5, "none"))),
    ("cross_entropy", lambda s, t, y: kdt.cross_entropy_forward_backward(s, y, 0.1),
     lambda s, t, y: (lambda x: kdt.cross_entropy(x, y, 0.1))),
    ("pseudo_label", lambda s, t, y: kdt.pseudo_label_forward_backward(s, t, 0.6),
     lambda s, t, y: (lambda x: kdt.pseudo_label(x, t, 0.6, return_mask=False))),
    ("class_balance", lambda s, t, y: kdt.class_balance_forward_backward(s, "logits"),
     lambda s, t, y: (lambda x: kdt.class_balance(x, "logits"))),
    ("class_balance probabilities",
     lambda s, t, y: kdt.class_balance_forward_backward(torch.softmax(s, 1), "probabilities"),
     None),
    ("mcc", lambda s, t, y: kdt.mcc_forward_backward(s, 2.5),
     lambda s, t, y: (lambda x: kdt.mcc(x, 2.5))),
]


class AutogradThroughTheFastPath(unittest.TestCase):
    """The autograd functions take the fast path's C call (less Python per
    call) when the call is one it supports: the same loss and gradient bit
    for bit as the general path, which every other call still takes."""

    ROUTED = [
        ("kl_distill", lambda x, t, y: kdt.kl_distill(x, t, y, temperature=4.0, alpha=0.9)),
        ("kl_distill sum, no labels",
         lambda x, t, y: kdt.kl_distill(x, t, None, 2.0, reduction="sum")),
        ("kl_distill int32 labels", lambda x, t, y: kdt.kl_distill(x, t, y.int(), 4.0, 0.5)),
        ("cross_entropy", lambda x, t, y: kdt.cross_entropy(x, y, 0.1)),
        ("cross_entropy sum", lambda x, t, y: kdt.cross_entropy(x, y, reduction="sum")),
        ("pseudo_label", lambda x, t, y: kdt.pseudo_label(x, t, 0.6, return_mask=False)),
        ("class_balance", lambda x, t, y: kdt.class_balance(x, "logits")),
        ("class_balance probabilities",
         lambda x, t, y: kdt.class_balance(torch.softmax(x, 1), "probabilities")),
        ("mcc", lambda x, t, y: kdt.mcc(x, 2.5)),
    ]

    def step(self, fn, s, t, y, upstream=1.0):
        x = s.clone().requires_grad_(True)
        loss = fn(x, t, y)
        (loss * upstream).backward()
        return loss.detach(), x.grad

    def test_routed_calls_equal_the_general_path(self):
        from unittest import mock
        s, t, y = data()
        for name, fn in self.ROUTED:
            with self.subTest(name):
                calls = []
                real = kdt._FastFunction.apply
                with mock.patch.object(kdt._FastFunction, "apply",
                                       lambda *a: calls.append(1) or real(*a)):
                    fast = self.step(fn, s, t, y, 3.0)
                if name != "class_balance probabilities":
                    self.assertEqual(calls, [1], "not routed")
                with mock.patch.object(kdt, "_fast_call", lambda *a: None):
                    general = self.step(fn, s, t, y, 3.0)
                self.assertTrue(torch.equal(fast[0], general[0]), name)
                self.assertTrue(torch.equal(fast[1], general[1]), name)

    def test_other_calls_take_the_general_path(self):
        s, t, y = data()
        others = [
            ("float64 student", lambda x: kdt.kl_distill(x.double(), t, y, 4.0, 0.9)),
            ("strided student", lambda x: kdt.mcc(x.t().contiguous().t(), 2.5)),
            ("weights", lambda x: kdt.kl_distill(x, t, y, 4.0, 0.9, weights=torch.ones(len(y)))),
            ("reduction none", lambda x: kdt.kl_distill(x, t, y, 4.0, 0.9, "none").sum()),
            ("teacher list", lambda x: kdt.kl_distill(x, [t, t], y, 4.0, 0.9)),
            ("ignore_index", lambda x: kdt.cross_entropy(x, y, ignore_index=3)),
            ("mask returned", lambda x: kdt.pseudo_label(x, t, 0.6).loss),
            ("option", lambda x: kdt.mcc(x, 2.5, threads=1)),
        ]
        for name, fn in others:
            with self.subTest(name):
                x = s.clone().requires_grad_(True)
                loss = fn(x)
                self.assertNotIsInstance(loss.grad_fn, kdt._FastFunction._backward_cls, name)
                loss.backward()
                self.assertEqual(x.grad.shape, s.shape)

    def test_second_backward_and_double_backward(self):
        s, t, y = data()
        x = s.clone().requires_grad_(True)
        loss = kdt.kl_distill(x, t, y, temperature=4.0, alpha=0.9)
        self.assertIsInstance(loss.grad_fn, kdt._FastFunction._backward_cls)
        loss.backward(retain_graph=True)
        first = x.grad.clone()
        loss.backward()                              # recomputed, accumulated
        self.assertTrue(torch.equal(x.grad, 2 * first))
        x.grad = None
        loss = kdt.mcc(x, 2.5)
        (g,) = torch.autograd.grad(loss, x, create_graph=True)
        with self.assertRaisesRegex(RuntimeError, "once-differentiable"):
            (g ** 2).sum().backward()

    def test_one_gradient_buffer_scaled_in_place(self):
        """The gradient the C call wrote is the one the student receives,
        scaled in place by the upstream value: one n x C buffer, no copy (the
        issue's case of two buffers at 1M x 100), on both paths."""
        from unittest import mock
        from kdlib import _fast, _losses
        s, t, y = data()
        written = []
        real_fast, real_bind = _fast._bind_output, _losses.Loss.bind_output

        def spy_fast(h, role, ptr, ld):
            written.append(ptr)
            return real_fast(h, role, ptr, ld)

        def spy_bind(self, role, out, name=None):
            written.append(out.ctypes.data)
            return real_bind(self, role, out, name)
        for name, fn in [("fast path", lambda x: kdt.kl_distill(x, t, y, 4.0, 0.9)),
                         ("general path", lambda x: kdt.kl_distill(
                             x, t, y, 4.0, 0.9, weights=torch.ones(len(y))))]:
            with self.subTest(name):
                written.clear()
                x = s.clone().requires_grad_(True)
                with mock.patch.object(_fast, "_bind_output", spy_fast), \
                        mock.patch.object(_losses.Loss, "bind_output", spy_bind):
                    (fn(x) * 2.5).backward()
                self.assertEqual(written, [x.grad.data_ptr()], name)
                x1 = s.clone().requires_grad_(True)
                fn(x1).backward()
                self.assertTrue(torch.equal(x.grad, x1.grad * 2.5), name)

    def test_refusals_are_kept(self):
        s, t, y = data()
        x = s.clone().requires_grad_(True)
        with self.assertRaisesRegex(ValueError, "teacher requires grad"):
            kdt.kl_distill(x, t.clone().requires_grad_(True), y, 4.0, 0.9)
        with self.assertRaisesRegex(TypeError, "inputs"):
            kdt.class_balance(x)


class FastPath(unittest.TestCase):
    def test_equal_to_the_autograd_functions(self):
        s, t, y = data()
        for name, fast, auto in CASES:
            loss, grad = fast(s, t, y)
            self.assertEqual(loss.dtype, torch.float32, name)
            self.assertEqual(grad.shape, s.shape, name)
            self.assertFalse(loss.requires_grad or grad.requires_grad, name)
            if auto is None:
                p = torch.softmax(s, 1)
                want_loss, want_grad = autograd(lambda x: kdt.class_balance(x, "probabilities"), p)
            else:
                want_loss, want_grad = autograd(auto(s, t, y), s)
            self.assertTrue(torch.equal(loss, want_loss), name)
            self.assertTrue(torch.equal(grad, want_grad), name)
            again = fast(s, t, y)                            # the cached handle
            self.assertTrue(torch.equal(again[0], loss) and torch.equal(again[1], grad), name)

    def test_manual_backward_reaches_the_parameters(self):
        torch.manual_seed(1)
        net = torch.nn.Linear(5, 7)
        x = torch.randn(12, 5)
        _, t, y = data(12)
        logits = net(x)
        loss, grad = kdt.kl_distill_forward_backward(logits, t, y, 4.0, 0.9)
        logits.backward(grad)
        fast_w = net.weight.grad.clone()
        net.zero_grad()
        kdt.kl_distill(net(x), t, y, temperature=4.0, alpha=0.9).backward()
        self.assertTrue(torch.equal(fast_w, net.weight.grad))

    def test_strided_rows_int32_labels_and_empty_batch(self):
        s, t, y = data()
        wide = torch.zeros(37, 10)
        wide[:, :7] = s
        a = kdt.kl_distill_forward_backward(wide[:, :7], t, y.int(), 4.0, 0.9)
        b = kdt.kl_distill_forward_backward(s, t, y, 4.0, 0.9)
        self.assertTrue(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]))
        e = kdt.cross_entropy_forward_backward(torch.zeros(0, 7), torch.zeros(0, dtype=torch.int64))
        self.assertEqual(e[1].shape, (0, 7))
        self.assertEqual(float(e[0]), 0.0)

    def test_int64_labels_are_bound_in_place_without_a_copy(self):
        from kdlib import _fast
        s, t, y = data()
        seen = []
        real = _fast._bind_labels64
        _fast._bind_labels64 = lambda p, ptr: seen.append(ptr) or real(p, ptr)
        try:
            a = kdt.kl_distill_forward_backward(s, t, y, 4.0, 0.9)
        finally:
            _fast._bind_labels64 = real
        self.assertEqual(seen, [y.data_ptr()])                       # the tensor's own storage
        b = kdt.kl_distill_forward_backward(s, t, y.int(), 4.0, 0.9)  # int32 path
        c = kdt.kl_distill_forward_backward(s, t, y.to(torch.int16), 4.0, 0.9)
        for r in (b, c):
            self.assertTrue(torch.equal(a[0], r[0]) and torch.equal(a[1], r[1]))
        ign = y.clone()
        ign[::3] = -100
        d = kdt.cross_entropy_forward_backward(s, ign)
        e = kdt.cross_entropy_forward_backward(s, ign.int())
        self.assertTrue(torch.equal(d[0], e[0]) and torch.equal(d[1], e[1]))

    def test_autograd_path_binds_int64_labels_in_place(self):
        from kdlib import _fast, _losses
        s, t, y = data()
        seen = []
        real, real_fast = _losses.lib.kd_loss_bind_labels64, _fast._bind_labels64
        _losses.lib.kd_loss_bind_labels64 = lambda h, p: seen.append(p) or real(h, p)
        _fast._bind_labels64 = lambda h, p: seen.append(p) or real_fast(h, p)
        try:
            x = s.clone().requires_grad_(True)        # through the fast path
            kdt.kl_distill(x, t, y, temperature=4.0, alpha=0.9).backward()
            xw = s.clone().requires_grad_(True)       # weights: the general path
            kdt.kl_distill(xw, t, y, temperature=4.0, alpha=0.9,
                           weights=torch.ones(len(y))).backward()
        finally:
            _losses.lib.kd_loss_bind_labels64, _fast._bind_labels64 = real, real_fast
        self.assertEqual([ctypes.cast(p, ctypes.c_void_p).value for p in seen],
                         [y.data_ptr(), y.data_ptr()])
        self.assertTrue(torch.equal(x.grad, xw.grad))
        x32 = s.clone().requires_grad_(True)
        kdt.kl_distill(x32, t, y.int(), temperature=4.0, alpha=0.9).backward()
        self.assertTrue(torch.equal(x.grad, x32.grad))

    def test_out_buffer_is_reused(self):
        s, t, y = data()
        buf = torch.full_like(s, 7.0)
        loss, grad = kdt.mcc_forward_backward(s, out=buf)
        self.assertIs(grad, buf)
        self.assertTrue(torch.equal(grad, kdt.mcc_forward_backward(s)[1]))
        with self.assertRaises(ValueError):
            kdt.mcc_forward_backward(s, out=torch.zeros(3, 7))
        with self.assertRaises(ValueError):
            kdt.kl_distill_forward_backward(s, t, y, out=torch.zeros(37, 7).double())

    def test_refused_inputs(self):
        s, t, y = data()
        with self.assertRaises(TypeError):
            kdt.kl_distill_forward_backward(s.double(), t, y)        # no conversion here
        with self.assertRaises(TypeError):
            kdt.kl_distill_forward_backward(s.numpy(), t, y)
        with self.assertRaises(ValueError):
            kdt.kl_distill_forward_backward(s.t(), t.t(), y)         # column-strided
        with self.assertRaises(ValueError):
            kdt.kl_distill_forward_backward(s, t[:5], y)             # shape mismatch
        with self.assertRaises(ValueError):
            kdt.kl_distill_forward_backward(s, t, y[:5])
        with self.assertRaises(TypeError):
            kdt.class_balance_forward_backward(s)                    # inputs required
        with self.assertRaises(ValueError):
            kdt.cross_entropy_forward_backward(s, y, reduction="batchmean")
        bad = y.clone()
        bad[3] = 7
        with self.assertRaises(kdlib.KdInvalidArgumentError) as cm:
            kdt.cross_entropy_forward_backward(s, bad)
        self.assertIn("3", str(cm.exception))
        wrap = y.clone()
        wrap[0] = 2 ** 32 + 1                                        # would wrap to 1
        with self.assertRaises(kdlib.KdInvalidArgumentError) as cm:  # refused by libkd
            kdt.cross_entropy_forward_backward(s, wrap)
        self.assertIn("4294967297", str(cm.exception))
        with self.assertRaises(RuntimeError):
            torch.jit.trace(lambda z: kdt.mcc_forward_backward(z)[0], (s,), check_trace=False)


if __name__ == "__main__":
    unittest.main()
