#!/usr/bin/env python3
"""Parity of kdlib's distillation-family losses with PyTorch's own functions.

kdlib runs in float32; PyTorch runs the same float32 inputs promoted to
float64, and its autograd gives the reference gradients.  Covered:
F.cross_entropy (class labels with ignore_index and label_smoothing,
probability targets, softmax(teacher / T) targets, soft-label mixing),
F.kl_div on log_softmax / softmax at temperature T (forward and reverse KL,
the generalized JSD built from F.kl_div), F.mse_loss, with every reduction,
per-sample weights, several teachers, strided rows and extreme logits.

The library is loaded through ctypes from $KDLIB_LIBRARY (CTest sets it).
Exit code 77 (CTest SKIP_RETURN_CODE) when torch or numpy is missing.
"""
import ctypes
import os
import sys
import unittest
import zlib

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as exc:  # pragma: no cover - depends on the machine
    print(f"skipping: {exc}")
    sys.exit(77)

# ---- the C API through ctypes (argtypes / restype set for every function) ----

KD_LOSS_CROSS_ENTROPY, KD_LOSS_KL_DISTILL, KD_LOSS_LOGIT_MSE = 1, 2, 3
(KD_PARAM_REDUCTION, KD_PARAM_TEMPERATURE, KD_PARAM_ALPHA, KD_PARAM_SOFT_WEIGHT,
 KD_PARAM_HARD_WEIGHT, KD_PARAM_T2_SCALING, KD_PARAM_DIVERGENCE, KD_PARAM_JSD_BETA,
 KD_PARAM_NORMALIZATION, KD_PARAM_IGNORE_INDEX, KD_PARAM_LABEL_SMOOTHING,
 KD_PARAM_SMOOTHING_MODE, KD_PARAM_LABEL_WEIGHT, KD_PARAM_THREADS) = range(1, 15)
MEAN, SUM, NONE = 0, 1, 2
FORWARD_KL, REVERSE_KL, JSD = 0, 1, 2
NORMALIZE_BATCH, NORMALIZE_VALID = 0, 1
KD_ARG_STUDENT, KD_ARG_TEACHER, KD_ARG_TARGET = 1, 2, 3
KD_ARG_GRAD_STUDENT, KD_ARG_PER_SAMPLE = 6, 7

FLOATP = ctypes.POINTER(ctypes.c_float)
I32P = ctypes.POINTER(ctypes.c_int32)
I64P = ctypes.POINTER(ctypes.c_int64)
HANDLE = ctypes.c_void_p


def load_library():
    path = os.environ.get("KDLIB_LIBRARY")
    if not path:
        raise SystemExit("KDLIB_LIBRARY is not set (path to libkd.so)")
    lib = ctypes.CDLL(path)
    sig = {
        "kd_status_string": (ctypes.c_char_p, [ctypes.c_int32]),
        "kd_loss_create": (ctypes.c_int32, [ctypes.POINTER(HANDLE), ctypes.c_int32, ctypes.c_int64]),
        "kd_loss_destroy": (None, [HANDLE]),
        "kd_loss_last_error": (ctypes.c_char_p, [HANDLE]),
        "kd_loss_set_int": (ctypes.c_int32, [HANDLE, ctypes.c_int32, ctypes.c_int64]),
        "kd_loss_set_float": (ctypes.c_int32, [HANDLE, ctypes.c_int32, ctypes.c_double]),
        "kd_loss_bind_matrix": (ctypes.c_int32, [HANDLE, ctypes.c_int32, FLOATP, ctypes.c_int64]),
        "kd_loss_bind_teachers": (ctypes.c_int32, [HANDLE, ctypes.c_int32, ctypes.POINTER(FLOATP),
                                                   I64P, FLOATP]),
        "kd_loss_bind_labels": (ctypes.c_int32, [HANDLE, I32P]),
        "kd_loss_bind_weights": (ctypes.c_int32, [HANDLE, FLOATP]),
        "kd_loss_bind_output": (ctypes.c_int32, [HANDLE, ctypes.c_int32, FLOATP, ctypes.c_int64]),
        "kd_loss_forward": (ctypes.c_int32, [HANDLE, ctypes.c_int64, FLOATP]),
        "kd_loss_backward": (ctypes.c_int32, [HANDLE, ctypes.c_int64, FLOATP]),
        "kd_loss_forward_backward": (ctypes.c_int32, [HANDLE, ctypes.c_int64, FLOATP]),
    }
    for name, (restype, argtypes) in sig.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes
    return lib


LIB = load_library()


def fptr(a):
    return None if a is None else a.ctypes.data_as(FLOATP)


def strided(x, rng, extra=None):
    """float32 copy of x (n x c) stored with row stride ld > c, NaN padding."""
    n, c = x.shape
    ld = c + (extra if extra is not None else int(rng.integers(1, 5)))
    buf = np.full((max(n, 1), ld), np.nan, dtype=np.float32)
    buf[:n, :c] = x
    return buf, ld


class Loss:
    """A kd_loss handle with its inputs bound (keeps the arrays alive)."""

    def __init__(self, kind, c, params=None):
        self.h = HANDLE()
        self.check(LIB.kd_loss_create(ctypes.byref(self.h), kind, c))
        self.keep = []
        for key, value in (params or {}).items():
            if isinstance(value, float):
                self.check(LIB.kd_loss_set_float(self.h, key, value))
            else:
                self.check(LIB.kd_loss_set_int(self.h, key, value))

    def __del__(self):
        if getattr(self, "h", None):
            LIB.kd_loss_destroy(self.h)

    def check(self, status):
        if status != 0:
            msg = LIB.kd_loss_last_error(self.h).decode() if self.h else ""
            raise AssertionError(f"kdlib: {LIB.kd_status_string(status).decode()}: {msg}")

    def matrix(self, role, buf, ld):
        self.keep.append(buf)
        self.check(LIB.kd_loss_bind_matrix(self.h, role, fptr(buf), ld))

    def teachers(self, bufs, lds, weights=None):
        ptrs = (FLOATP * len(bufs))(*[fptr(b) for b in bufs])
        ldarr = (ctypes.c_int64 * len(bufs))(*lds)
        w = None if weights is None else np.ascontiguousarray(weights, dtype=np.float32)
        self.keep += list(bufs) + [w]
        self.check(LIB.kd_loss_bind_teachers(self.h, len(bufs), ptrs, ldarr, fptr(w)))

    def labels(self, y):
        y = np.ascontiguousarray(y, dtype=np.int32)
        self.keep.append(y)
        self.check(LIB.kd_loss_bind_labels(self.h, y.ctypes.data_as(I32P)))

    def weights(self, w):
        w = np.ascontiguousarray(w, dtype=np.float32)
        self.keep.append(w)
        self.check(LIB.kd_loss_bind_weights(self.h, fptr(w)))

    def run(self, n, c, reduction, upstream):
        """forward, backward(upstream) and fused: (loss, grad, fused loss, fused grad)."""
        m = n if reduction == NONE else 1
        loss = np.full(max(m, 1), np.nan, dtype=np.float32)
        self.check(LIB.kd_loss_forward(self.h, n, fptr(loss)))
        gld = c + 2
        grad = np.full((max(n, 1), gld), np.nan, dtype=np.float32)
        self.check(LIB.kd_loss_bind_output(self.h, KD_ARG_GRAD_STUDENT, fptr(grad), gld))
        up = np.ascontiguousarray(upstream, dtype=np.float32)
        self.check(LIB.kd_loss_backward(self.h, n, fptr(up)))
        fgrad = np.full((max(n, 1), gld), np.nan, dtype=np.float32)
        floss = np.full(max(m, 1), np.nan, dtype=np.float32)
        self.check(LIB.kd_loss_bind_output(self.h, KD_ARG_GRAD_STUDENT, fptr(fgrad), gld))
        self.check(LIB.kd_loss_forward_backward(self.h, n, fptr(floss)))
        self.check(LIB.kd_loss_bind_output(self.h, KD_ARG_GRAD_STUDENT, None, 0))
        return loss[:m], grad[:n, :c], floss[:m], fgrad[:n, :c]


# ---- PyTorch side ----

def reduce_rows(values, reduction, denominator):
    """values: per-row terms (already weighted)."""
    if reduction == NONE:
        return values
    total = values.sum()
    if reduction == SUM:
        return total
    return total / denominator if denominator > 0 else total * 0.0


def average_teachers(teachers, weights):
    w = [1.0] * len(teachers) if weights is None else [float(v) for v in weights]
    total = sum(w)
    return sum(wk / total * tk for wk, tk in zip(w, teachers))


class ParityBase(unittest.TestCase):
    rng = None

    def setUp(self):
        self.rng = np.random.default_rng(zlib.crc32(self._testMethodName.encode()))
        torch.manual_seed(0)

    def logits(self, n, c, scale=2.0, extreme=False):
        x = self.rng.normal(0.0, scale, size=(n, c))
        if extreme:
            x = 1e4 * np.sign(self.rng.normal(size=(n, c))) + self.rng.normal(size=(n, c))
        return x.astype(np.float32)

    def labels(self, n, c, ignored=0.0, ignore_index=-100):
        y = self.rng.integers(0, c, size=n).astype(np.int32)
        if ignored > 0 and n > 1:
            y[self.rng.random(n) < ignored] = ignore_index
            y[0] = ignore_index
            y[-1] = c - 1
        return y

    def upstream(self, n, reduction):
        if reduction == NONE:
            return self.rng.normal(size=max(n, 1)).astype(np.float32)
        return np.array([0.75], dtype=np.float32)

    def compare(self, loss_fn, student, lib_loss, n, c, reduction, extreme=False, what=""):
        """loss_fn(s64) -> torch loss (scalar, or vector for NONE)."""
        s64 = torch.tensor(student.astype(np.float64), requires_grad=True)
        ref = loss_fn(s64)
        up = self.upstream(n, reduction)
        up64 = torch.tensor(up[: (n if reduction == NONE else 1)].astype(np.float64))
        if reduction == NONE:
            (ref * up64).sum().backward(retain_graph=True)
        else:
            (ref * up64[0]).backward(retain_graph=True)
        gref = s64.grad.detach().numpy().copy()
        s64.grad = None
        ref.sum().backward()
        gref1 = s64.grad.detach().numpy().copy()
        refv = np.atleast_1d(ref.detach().numpy())

        loss, grad, floss, fgrad = lib_loss.run(n, c, reduction, up)
        scale = 1.0 + (float(np.abs(student).max()) if student.size else 0.0)
        ltol = dict(rtol=2e-5, atol=1e-6 * scale * (n if reduction == SUM else 1))
        np.testing.assert_allclose(loss, refv, **ltol, err_msg=f"{what} loss")
        np.testing.assert_array_equal(floss, loss, err_msg=f"{what} fused loss")
        gmax = max(float(np.abs(gref).max()) if gref.size else 0.0, 1e-12)
        gtol = dict(rtol=1e-3 if extreme else 2e-4,
                    atol=(1e-4 if extreme else 2e-6) * gmax + (1e-6 if extreme else 1e-9))
        np.testing.assert_allclose(grad, gref, **gtol, err_msg=f"{what} backward grad")
        gmax1 = max(float(np.abs(gref1).max()) if gref1.size else 0.0, 1e-12)
        gtol["atol"] = (1e-4 if extreme else 2e-6) * gmax1 + (1e-6 if extreme else 1e-9)
        np.testing.assert_allclose(fgrad, gref1, **gtol, err_msg=f"{what} fused grad")


# ---- soft-target cross-entropy ----

class CrossEntropyParity(ParityBase):

    def ce_handle(self, c, s, params=None):
        h = Loss(KD_LOSS_CROSS_ENTROPY, c, params)
        sb, lds = strided(s, self.rng)
        h.matrix(KD_ARG_STUDENT, sb, lds)
        return h

    def test_class_labels_with_ignore_index_and_label_smoothing(self):
        for trial in range(12):
            n = int(self.rng.integers(1, 17))
            c = int(self.rng.choice([1, 2, 3, 10, 37, 100]))
            eps = float(self.rng.choice([0.0, 0.1, 0.5]))
            ii = int(self.rng.choice([-100, -1]))
            extreme = trial % 4 == 3
            s = self.logits(n, c, extreme=extreme)
            y = self.labels(n, c, ignored=0.3, ignore_index=ii)
            if (y == ii).all():
                y[-1] = 0
            yt = torch.tensor(y.astype(np.int64))
            for red, name in ((MEAN, "mean"), (SUM, "sum"), (NONE, "none")):
                with self.subTest(n=n, c=c, eps=eps, ii=ii, reduction=name):
                    h = self.ce_handle(c, s, {KD_PARAM_REDUCTION: red, KD_PARAM_IGNORE_INDEX: ii,
                                               KD_PARAM_LABEL_SMOOTHING: eps})
                    h.labels(y)
                    fn = (lambda z, name=name: F.cross_entropy(
                        z, yt, ignore_index=ii, label_smoothing=eps, reduction=name))
                    self.compare(fn, s, h, n, c, red, extreme=extreme)

    def test_all_labels_ignored_gives_zero_where_pytorch_gives_nan(self):
        s = self.logits(3, 4)
        y = np.full(3, -100, dtype=np.int32)
        ref = F.cross_entropy(torch.tensor(s, dtype=torch.float64), torch.tensor(y.astype(np.int64)))
        self.assertTrue(torch.isnan(ref))
        h = self.ce_handle(4, s)
        h.labels(y)
        loss, grad, _, _ = h.run(3, 4, MEAN, np.ones(1, dtype=np.float32))
        self.assertEqual(float(loss[0]), 0.0)
        self.assertTrue((grad == 0).all())

    def test_probability_targets(self):
        for trial in range(6):
            n, c = int(self.rng.integers(1, 13)), int(self.rng.choice([2, 5, 64]))
            s = self.logits(n, c, extreme=trial == 5)
            q = torch.softmax(torch.tensor(self.logits(n, c)), 1).numpy().astype(np.float32)
            if trial == 4:
                q = q * 1.7  # unnormalised targets: PyTorch's formula still applies
            qt = torch.tensor(q.astype(np.float64))
            for red, name in ((MEAN, "mean"), (SUM, "sum"), (NONE, "none")):
                with self.subTest(trial=trial, reduction=name):
                    h = self.ce_handle(c, s, {KD_PARAM_REDUCTION: red})
                    qb, ldq = strided(q, self.rng)
                    h.matrix(KD_ARG_TARGET, qb, ldq)
                    self.compare(lambda z, name=name: F.cross_entropy(z, qt, reduction=name),
                                 s, h, n, c, red, extreme=trial == 5)

    def test_teacher_logits_at_temperature(self):
        for T in (1.0, 2.0, 4.0, 0.5):
            n, c = 9, 11
            s, t = self.logits(n, c), self.logits(n, c, scale=3.0)
            q = F.softmax(torch.tensor(t.astype(np.float64)) / T, 1)
            for red, name in ((MEAN, "mean"), (SUM, "sum"), (NONE, "none")):
                with self.subTest(T=T, reduction=name):
                    h = self.ce_handle(c, s, {KD_PARAM_REDUCTION: red, KD_PARAM_TEMPERATURE: T})
                    tb, ldt = strided(t, self.rng)
                    h.matrix(KD_ARG_TEACHER, tb, ldt)
                    self.compare(lambda z, name=name: F.cross_entropy(z, q, reduction=name),
                                 s, h, n, c, red)

    def test_soft_label_mixing_with_weights(self):
        for w, eps, src in ((0.7, 0.0, "target"), (0.3, 0.1, "teacher"), (1.0, 0.0, "target"),
                            (0.0, 0.2, "teacher")):
            n, c, T = 10, 6, 3.0
            s, t = self.logits(n, c), self.logits(n, c, scale=2.0)
            y = self.labels(n, c, ignored=0.3)
            sw = self.rng.random(n).astype(np.float32) * 2
            valid = y != -100
            if src == "target":
                q_src = torch.softmax(torch.tensor(t.astype(np.float64)), 1)
                q_src = torch.tensor(q_src.numpy().astype(np.float32).astype(np.float64))
            else:
                q_src = F.softmax(torch.tensor(t.astype(np.float64)) / T, 1)
            onehot = F.one_hot(torch.tensor(np.where(valid, y, 0).astype(np.int64)), c).double()
            q = w * ((1 - eps) * onehot + eps / c) + (1 - w) * q_src
            mask = torch.tensor(valid.astype(np.float64)) * torch.tensor(sw.astype(np.float64))
            for red, name in ((MEAN, "mean"), (SUM, "sum"), (NONE, "none")):
                with self.subTest(w=w, eps=eps, src=src, reduction=name):
                    h = self.ce_handle(c, s, {KD_PARAM_REDUCTION: red, KD_PARAM_TEMPERATURE: T,
                                               KD_PARAM_LABEL_WEIGHT: w, KD_PARAM_LABEL_SMOOTHING: eps})
                    if src == "target":
                        qb, ldq = strided(q_src.numpy().astype(np.float32), self.rng)
                        h.matrix(KD_ARG_TARGET, qb, ldq)
                    else:
                        tb, ldt = strided(t, self.rng)
                        h.matrix(KD_ARG_TEACHER, tb, ldt)
                    h.labels(y)
                    h.weights(sw)

                    def fn(z, red=red):
                        rows = F.cross_entropy(z, q, reduction="none") * mask
                        return reduce_rows(rows, red, int(valid.sum()))
                    self.compare(fn, s, h, n, c, red)


# ---- KL distillation ----

class KLDistillParity(ParityBase):

    def kl_handle(self, c, s, teachers, tweights=None, params=None):
        h = Loss(KD_LOSS_KL_DISTILL, c, params)
        sb, lds = strided(s, self.rng)
        h.matrix(KD_ARG_STUDENT, sb, lds)
        bufs = [strided(t, self.rng) for t in teachers]
        h.teachers([b for b, _ in bufs], [ld for _, ld in bufs], tweights)
        return h

    @staticmethod
    def soft_rows(z, t64, T, divergence, beta):
        lq = F.log_softmax(z / T, 1)
        lp = F.log_softmax(t64 / T, 1)
        if divergence == JSD and beta == 0.0:
            divergence = FORWARD_KL
        if divergence == JSD and beta == 1.0:
            divergence = REVERSE_KL
        if divergence == FORWARD_KL:
            return F.kl_div(lq, lp.exp(), reduction="none").sum(1)
        if divergence == REVERSE_KL:
            return F.kl_div(lp, lq, reduction="none", log_target=True).sum(1)
        # log M = log(beta P + (1 - beta) Q) in log space, so that M never
        # underflows to 0 for extreme logits
        lm = torch.logsumexp(torch.stack([lp + np.log(beta), lq + np.log1p(-beta)]), 0)
        return (beta * F.kl_div(lm, lp, reduction="none", log_target=True).sum(1)
                + (1 - beta) * F.kl_div(lm, lq, reduction="none", log_target=True).sum(1))

    def test_hinton_expression_with_batchmean(self):
        """alpha T^2 kl_div(log_softmax(s/T), softmax(t/T), 'batchmean') + (1-alpha) CE(s, y)."""
        for n, c, T, alpha in ((8, 10, 4.0, 0.9), (1, 2, 2.0, 0.5), (16, 100, 1.0, 1.0), (5, 7, 3.0, 0.0)):
            s, t = self.logits(n, c), self.logits(n, c, scale=3.0)
            y = self.labels(n, c)
            t64, yt = torch.tensor(t.astype(np.float64)), torch.tensor(y.astype(np.int64))
            h = self.kl_handle(c, s, [t], None, {KD_PARAM_TEMPERATURE: T, KD_PARAM_ALPHA: alpha})
            h.labels(y)

            def fn(z, T=T, alpha=alpha, t64=t64, yt=yt):
                kl = F.kl_div(F.log_softmax(z / T, 1), F.softmax(t64 / T, 1), reduction="batchmean")
                return alpha * T * T * kl + (1 - alpha) * F.cross_entropy(z, yt)
            with self.subTest(n=n, c=c, T=T, alpha=alpha):
                self.compare(fn, s, h, n, c, MEAN)

    def test_every_option_and_reduction(self):
        configs = []
        for div, beta in ((FORWARD_KL, 0.5), (REVERSE_KL, 0.5), (JSD, 0.0), (JSD, 0.1), (JSD, 0.5),
                          (JSD, 0.9), (JSD, 1.0)):
            for t2 in (0, 1):
                for norm in (NORMALIZE_BATCH, NORMALIZE_VALID):
                    configs.append((div, beta, t2, norm))
        for k, (div, beta, t2, norm) in enumerate(configs):
            n = int(self.rng.integers(1, 14))
            c = int(self.rng.choice([2, 3, 10, 50]))
            T = float(self.rng.choice([1.0, 2.0, 4.0]))
            ws, wh = float(self.rng.choice([0.9, 1.0, 2.0])), float(self.rng.choice([0.0, 0.1, 0.5]))
            eps = float(self.rng.choice([0.0, 0.1]))
            n_teachers = 1 + k % 3
            tweights = None if k % 2 else self.rng.random(n_teachers) + 0.1
            use_weights = k % 4 == 1
            s = self.logits(n, c)
            teachers = [self.logits(n, c, scale=3.0) for _ in range(n_teachers)]
            y = self.labels(n, c, ignored=0.3)
            sw = (self.rng.random(n) * 2).astype(np.float32) if use_weights else np.ones(n, np.float32)
            valid = y != -100
            t64 = average_teachers([torch.tensor(t.astype(np.float64)) for t in teachers],
                                   None if tweights is None else np.float32(tweights))
            yt = torch.tensor(y.astype(np.int64))
            w64 = torch.tensor(sw.astype(np.float64))
            smask = torch.tensor(valid.astype(np.float64)) if norm == NORMALIZE_VALID else torch.ones(n,
                                                                                                    dtype=torch.float64)
            dsoft = int(valid.sum()) if norm == NORMALIZE_VALID else n
            f = T * T if t2 else 1.0
            for red, name in ((MEAN, "mean"), (SUM, "sum"), (NONE, "none")):
                params = {KD_PARAM_REDUCTION: red, KD_PARAM_TEMPERATURE: T, KD_PARAM_SOFT_WEIGHT: ws,
                          KD_PARAM_HARD_WEIGHT: wh, KD_PARAM_T2_SCALING: t2, KD_PARAM_DIVERGENCE: div,
                          KD_PARAM_JSD_BETA: beta, KD_PARAM_NORMALIZATION: norm,
                          KD_PARAM_LABEL_SMOOTHING: eps}
                h = self.kl_handle(c, s, teachers, tweights, params)
                h.labels(y)
                if use_weights:
                    h.weights(sw)

                def fn(z, red=red, T=T, div=div, beta=beta, ws=ws, wh=wh, eps=eps, f=f, t64=t64, yt=yt,
                       w64=w64, smask=smask, dsoft=dsoft, valid=valid):
                    soft = w64 * ws * f * self.soft_rows(z, t64, T, div, beta) * smask
                    hard = w64 * wh * F.cross_entropy(z, yt, label_smoothing=eps, reduction="none")
                    if red == NONE:
                        return soft + hard
                    if red == SUM:
                        return soft.sum() + hard.sum()
                    nv = int(valid.sum())
                    return (soft.sum() / dsoft if dsoft else 0.0) + (hard.sum() / nv if nv else 0.0)
                with self.subTest(div=div, beta=beta, t2=t2, norm=norm, n=n, c=c, reduction=name):
                    self.compare(fn, s, h, n, c, red)

    def test_extreme_logits(self):
        for div, beta in ((FORWARD_KL, 0.5), (REVERSE_KL, 0.5), (JSD, 0.5), (JSD, 0.25)):
            n, c, T = 6, 9, 4.0
            s, t = self.logits(n, c, extreme=True), self.logits(n, c, extreme=True)
            t64 = torch.tensor(t.astype(np.float64))
            for red, name in ((MEAN, "mean"), (SUM, "sum"), (NONE, "none")):
                h = self.kl_handle(c, s, [t], None, {KD_PARAM_REDUCTION: red, KD_PARAM_TEMPERATURE: T,
                                                 KD_PARAM_DIVERGENCE: div, KD_PARAM_JSD_BETA: beta})

                def fn(z, red=red, div=div, beta=beta, n=n):
                    rows = T * T * self.soft_rows(z, t64, T, div, beta)
                    return reduce_rows(rows, red, n)
                with self.subTest(div=div, beta=beta, reduction=name):
                    self.compare(fn, s, h, n, c, red, extreme=True)


# ---- logit MSE ----

class LogitMSEParity(ParityBase):

    def test_mse_loss_and_hard_label_mix(self):
        for trial in range(10):
            n = int(self.rng.integers(1, 17))
            c = int(self.rng.choice([1, 2, 10, 37]))
            alpha = float(self.rng.choice([1.0, 0.9, 0.5]))
            extreme = trial == 9
            s = self.logits(n, c, extreme=extreme)
            teachers = [self.logits(n, c, extreme=extreme) for _ in range(1 if extreme else 1 + trial % 3)]
            tweights = None if trial % 2 else self.rng.random(len(teachers)) + 0.1
            y = self.labels(n, c, ignored=0.2)
            valid = y != -100
            yt = torch.tensor(y.astype(np.int64))
            t64 = average_teachers([torch.tensor(t.astype(np.float64)) for t in teachers],
                                   None if tweights is None else np.float32(tweights))
            for red, name in ((MEAN, "mean"), (SUM, "sum"), (NONE, "none")):
                h = Loss(KD_LOSS_LOGIT_MSE, c, {KD_PARAM_REDUCTION: red, KD_PARAM_ALPHA: alpha})
                sb, lds = strided(s, self.rng)
                h.matrix(KD_ARG_STUDENT, sb, lds)
                bufs = [strided(t, self.rng) for t in teachers]
                h.teachers([b for b, _ in bufs], [ld for _, ld in bufs], tweights)
                h.labels(y)

                def fn(z, red=red, alpha=alpha, t64=t64, yt=yt, valid=valid, c=c):
                    # MEAN: F.mse_loss's mean over all n*C elements; SUM and NONE
                    # add / return the per-row means (F.mse_loss(sum) / C).
                    if red == MEAN:
                        soft = F.mse_loss(z, t64)
                        nv = int(valid.sum())
                        hard = F.cross_entropy(z, yt) if nv else 0.0
                        return alpha * soft + (1 - alpha) * hard
                    rows = (alpha * F.mse_loss(z, t64, reduction="none").mean(1)
                            + (1 - alpha) * F.cross_entropy(z, yt, reduction="none"))
                    if red == SUM:
                        self.assertTrue(torch.allclose(
                            F.mse_loss(z, t64, reduction="sum") / c,
                            F.mse_loss(z, t64, reduction="none").mean(1).sum()))
                    return rows if red == NONE else rows.sum()
                with self.subTest(trial=trial, n=n, c=c, alpha=alpha, reduction=name):
                    self.compare(fn, s, h, n, c, red, extreme=extreme)


if __name__ == "__main__":
    torch.set_num_threads(1)
    unittest.main(verbosity=1)
