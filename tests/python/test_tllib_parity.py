#!/usr/bin/env python3
"""Parity of kdlib's self-training losses with the tllib.self_training definitions.

Each tllib loss is re-implemented here from its definition in PyTorch
(ConfidenceBasedSelfTrainingLoss, StrongWeakConsistencyLoss, the Pi-model
ConsistencyLoss with L2 / KL / JS distances, ClassBalanceLoss,
MinimumClassConfusionLoss, WorstCaseEstimationLoss); autograd gives the
reference gradients.  kdlib runs in float32; PyTorch runs the same float32
inputs promoted to float64 (and float32 where a float32 detail matters).

The library is loaded through ctypes from $KDLIB_LIBRARY (CTest sets it).
Exit code 77 (CTest SKIP_RETURN_CODE) when torch or numpy is missing.
"""
import ctypes
import os
import sys
import unittest

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError as exc:  # pragma: no cover - depends on the machine
    print(f"skipping: {exc}")
    sys.exit(77)

PSEUDO_LABEL, STRONG_WEAK, CONSISTENCY, CLASS_BALANCE, MCC, WORST_CASE, ENTROPY = range(10, 17)
P_REDUCTION, P_TEMPERATURE = 1, 2
P_THRESHOLD, P_THRESHOLD_MODE, P_DISTANCE, P_INPUT_TYPE, P_ETA_PRIME, P_UNLABELED_ROWS = range(32, 38)
MEAN, SUM, NONE = 0, 1, 2
A_STUDENT, A_TEACHER, A_WEIGHTS, A_GRAD_STUDENT = 1, 2, 5, 6
A_CLASS_THRESHOLDS, A_MASK, A_PSEUDO_LABELS, A_GRAD_TEACHER = 16, 17, 18, 19
A_LABELED_MAIN, A_LABELED_ADV, A_UNLABELED_MAIN, A_UNLABELED_ADV = 20, 21, 22, 23
A_GRAD_LABELED_ADV, A_GRAD_UNLABELED_ADV = 24, 25

HANDLE = ctypes.c_void_p
VP = ctypes.c_void_p


def load_library():
    path = os.environ.get("KDLIB_LIBRARY")
    if not path:
        raise SystemExit("KDLIB_LIBRARY is not set (path to libkd.so)")
    lib = ctypes.CDLL(path)
    i32, i64 = ctypes.c_int32, ctypes.c_int64
    sig = {
        "kd_loss_create": (i32, [ctypes.POINTER(HANDLE), i32, i64]),
        "kd_loss_destroy": (None, [HANDLE]),
        "kd_loss_last_error": (ctypes.c_char_p, [HANDLE]),
        "kd_loss_set_int": (i32, [HANDLE, i32, i64]),
        "kd_loss_set_float": (i32, [HANDLE, i32, ctypes.c_double]),
        "kd_loss_bind_matrix": (i32, [HANDLE, i32, VP, i64]),
        "kd_loss_bind_vector": (i32, [HANDLE, i32, VP]),
        "kd_loss_bind_output": (i32, [HANDLE, i32, VP, i64]),
        "kd_loss_bind_output_labels": (i32, [HANDLE, i32, VP]),
        "kd_loss_forward": (i32, [HANDLE, i64, VP]),
        "kd_loss_backward": (i32, [HANDLE, i64, VP]),
        "kd_loss_forward_backward": (i32, [HANDLE, i64, VP]),
    }
    for name, (res, args) in sig.items():
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = res, args
    return lib


LIB = load_library()


def ptr(a):
    return None if a is None else ctypes.c_void_p(a.ctypes.data)


class Loss:
    """A kd_loss handle; keeps every bound array alive."""

    def __init__(self, kind, c, ints=(), floats=()):
        self.h = HANDLE()
        self.keep = []
        self.ok(LIB.kd_loss_create(ctypes.byref(self.h), kind, c))
        for k, v in ints:
            self.ok(LIB.kd_loss_set_int(self.h, k, v))
        for k, v in floats:
            self.ok(LIB.kd_loss_set_float(self.h, k, v))

    def ok(self, st):
        if st != 0:
            msg = LIB.kd_loss_last_error(self.h).decode() if self.h else ""
            raise AssertionError(f"kdlib status {st}: {msg}")

    def matrix(self, role, a):
        self.keep.append(a)
        self.ok(LIB.kd_loss_bind_matrix(self.h, role, ptr(a), a.shape[1]))

    def vector(self, role, a):
        self.keep.append(a)
        self.ok(LIB.kd_loss_bind_vector(self.h, role, ptr(a)))

    def output(self, role, a):
        self.keep.append(a)
        self.ok(LIB.kd_loss_bind_output(self.h, role, ptr(a), a.shape[1] if a.ndim == 2 else 0))

    def labels_out(self, a):
        self.keep.append(a)
        self.ok(LIB.kd_loss_bind_output_labels(self.h, A_PSEUDO_LABELS, ptr(a)))

    def fused(self, n, count=1):
        out = np.zeros(count, np.float32)
        self.ok(LIB.kd_loss_forward_backward(self.h, n, ptr(out)))
        return out

    def __del__(self):
        LIB.kd_loss_destroy(self.h)


def rand(rng, n, c, scale=2.0, ld=None):
    """float32 n x c logits, viewed inside a wider (ld) buffer when asked."""
    x = (rng.standard_normal((n, ld or c)) * scale).astype(np.float32)
    return x


def t64(a, c):
    return torch.tensor(a[:, :c], dtype=torch.float64, requires_grad=True)


def close(test, got, want, rtol=2e-5, atol=2e-6, what=""):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    test.assertTrue(np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True),
                    f"{what}: max |diff| {np.max(np.abs(got - want)) if got.size else 0}")


# ---- the tllib definitions, re-implemented ----

def tl_pseudo_label(y, y_t, thr, inclusive=False, class_thr=None):
    conf, pl = F.softmax(y_t.detach(), dim=1).max(dim=1)
    tau = thr if class_thr is None else class_thr[pl]
    mask = (conf >= tau if inclusive else conf > tau).to(y.dtype)
    return (F.cross_entropy(y, pl, reduction="none") * mask).mean(), mask, pl


def tl_strong_weak(y_strong, y, thr, temp):
    conf, _ = F.softmax(y.detach(), dim=1).max(dim=1)
    mask = (conf > thr).to(y.dtype)
    log_q = F.log_softmax(y_strong / temp, dim=1)
    kl = F.kl_div(log_q, F.softmax(y.detach(), dim=1), reduction="none").sum(dim=1)
    return (kl * mask).sum() / max(mask.sum(), 1)


def tl_consistency(x1, x2, logits, dist, mask, reduction):
    p1 = F.softmax(x1, dim=1) if logits else x1
    p2 = F.softmax(x2, dim=1) if logits else x2
    if dist == 0:
        d = ((p1 - p2) ** 2).sum(dim=1)
    elif dist == 1:
        d = F.kl_div(p1.log(), p2, reduction="none").sum(dim=1)
    else:
        m = 0.5 * (p1 + p2)
        d = 0.5 * (F.kl_div(m.log(), p1, reduction="none").sum(dim=1)
                   + F.kl_div(m.log(), p2, reduction="none").sum(dim=1))
    d = d * mask
    return d.mean() if reduction == MEAN else (d.sum() if reduction == SUM else d)


def tl_class_balance(p):
    c = p.shape[1]
    return F.binary_cross_entropy(p.mean(dim=0), torch.ones(c, dtype=p.dtype) / c)


def tl_mcc(logits, temp):
    n, c = logits.shape
    pred = F.softmax(logits / temp, dim=1)
    ent = (-pred * torch.log(pred + 1e-5)).sum(dim=1).detach()
    w = 1 + torch.exp(-ent)
    w = (n * w / torch.sum(w)).unsqueeze(dim=1)
    a = torch.mm((pred * w).transpose(1, 0), pred)
    a = a / torch.sum(a, dim=1)
    return (torch.sum(a) - torch.trace(a)) / c


def tl_worst_case(y_l, y_l_adv, y_u, y_u_adv, eta):
    _, pred_l = y_l.max(dim=1)
    loss_l = eta * F.cross_entropy(y_l_adv, pred_l)
    _, pred_u = y_u.max(dim=1)
    shifted = torch.log(torch.clamp(1.0 - F.softmax(y_u_adv, dim=1) + 1e-6, max=1.0))
    return loss_l + F.nll_loss(shifted, pred_u)


class SelfTrainingParity(unittest.TestCase):
    def setUp(self):
        torch.set_num_threads(1)
        self.rng = np.random.default_rng(1234)

    def test_pseudo_label_loss_mask_labels_and_gradient(self):
        n, c, ld = 64, 10, 13
        for thr, inclusive, per_class in [(0.5, 0, False), (0.7, 1, False), (0.9, 0, True)]:
            s, t = rand(self.rng, n, c, ld=ld), rand(self.rng, n, c, 4.0, ld=ld)
            cthr = self.rng.uniform(0.2, 0.9, c).astype(np.float32)
            loss = Loss(PSEUDO_LABEL, c, ints=[(P_THRESHOLD_MODE, inclusive)], floats=[(P_THRESHOLD, thr)])
            loss.matrix(A_STUDENT, s)
            loss.matrix(A_TEACHER, t)
            if per_class:
                loss.vector(A_CLASS_THRESHOLDS, cthr)
            g = np.zeros((n, ld), np.float32)
            mask = np.zeros(n, np.float32)
            labels = np.zeros(n, np.int32)
            loss.output(A_GRAD_STUDENT, g)
            loss.output(A_MASK, mask)
            loss.labels_out(labels)
            value = loss.fused(n)
            ts, tt = t64(s, c), torch.tensor(t[:, :c])
            # the mask is decided in float32, as tllib does on float32 logits
            cls = torch.tensor(cthr) if per_class else None
            _, rmask, rpl = tl_pseudo_label(ts.float().detach(), tt, thr, inclusive, cls)
            self.assertTrue(np.array_equal(mask, rmask.numpy()), "mask")
            self.assertTrue(np.array_equal(labels, rpl.numpy()), "labels")
            self.assertTrue(0 < mask.sum() < n, "the data exercises both sides")
            # the float64 loss uses the float32 mask (the mask has no gradient)
            ref = (F.cross_entropy(ts, rpl, reduction="none") * rmask.double()).mean()
            ref.backward()
            close(self, value[0], ref.item(), what="loss")
            close(self, g[:, :c], ts.grad.numpy(), what="grad")

    def test_strong_weak_consistency(self):
        n, c = 48, 7
        for thr, temp in [(0.6, 1.0), (0.7, 0.4), (0.95, 2.0)]:
            s, t = rand(self.rng, n, c), rand(self.rng, n, c, 4.0)
            loss = Loss(STRONG_WEAK, c, floats=[(P_THRESHOLD, thr), (P_TEMPERATURE, temp)])
            loss.matrix(A_STUDENT, s)
            loss.matrix(A_TEACHER, t)
            g = np.zeros((n, c), np.float32)
            loss.output(A_GRAD_STUDENT, g)
            value = loss.fused(n)
            ts = t64(s, c)
            ref = tl_strong_weak(ts, torch.tensor(t, dtype=torch.float64), thr, temp)
            ref.backward()
            close(self, value[0], ref.item(), what="loss")
            close(self, g, ts.grad.numpy(), what="grad")

    def test_pi_model_consistency_both_gradients(self):
        n, c = 40, 6
        for logits in (1, 0):
            for dist in (0, 1, 2):
                for red in (MEAN, SUM, NONE):
                    a, b = rand(self.rng, n, c), rand(self.rng, n, c)
                    if not logits:
                        a = F.softmax(torch.tensor(a), dim=1).numpy()
                        b = F.softmax(torch.tensor(b), dim=1).numpy()
                    mask = (self.rng.uniform(size=n) > 0.3).astype(np.float32)
                    loss = Loss(CONSISTENCY, c, ints=[(P_DISTANCE, dist), (P_INPUT_TYPE, 1 - logits),
                                                      (P_REDUCTION, red)])
                    loss.matrix(A_STUDENT, a)
                    loss.matrix(A_TEACHER, b)
                    loss.vector(A_WEIGHTS, mask)
                    ga, gb = np.zeros((n, c), np.float32), np.zeros((n, c), np.float32)
                    loss.output(A_GRAD_STUDENT, ga)
                    loss.output(A_GRAD_TEACHER, gb)
                    value = loss.fused(n, n if red == NONE else 1)
                    ta, tb = t64(a, c), t64(b, c)
                    ref = tl_consistency(ta, tb, logits, dist, torch.tensor(mask, dtype=torch.float64), red)
                    ref.sum().backward()
                    what = f"logits {logits} dist {dist} red {red}"
                    close(self, value, ref.detach().numpy().reshape(-1), what=what)
                    close(self, ga, ta.grad.numpy(), rtol=1e-4, atol=1e-5, what=what + " grad 1")
                    close(self, gb, tb.grad.numpy(), rtol=1e-4, atol=1e-5, what=what + " grad 2")

    def test_class_balance(self):
        for n, c, logits, scale in [(50, 10, 1, 2.0), (33, 4, 0, 1.0), (8, 3, 1, 30.0), (1, 2, 1, 1.0)]:
            x = rand(self.rng, n, c, scale)
            if not logits:
                x = F.softmax(torch.tensor(x), dim=1).numpy()
            loss = Loss(CLASS_BALANCE, c, ints=[(P_INPUT_TYPE, 1 - logits)])
            loss.matrix(A_STUDENT, x)
            g = np.zeros((n, c), np.float32)
            loss.output(A_GRAD_STUDENT, g)
            value = loss.fused(n)
            tx = t64(x, c)
            ref = tl_class_balance(F.softmax(tx, dim=1) if logits else tx)
            ref.backward()
            close(self, value[0], ref.item(), what=f"loss {n}x{c}")
            close(self, g, tx.grad.numpy(), rtol=1e-4, atol=1e-6, what=f"grad {n}x{c}")

    def test_minimum_class_confusion(self):
        for n, c, temp, scale in [(64, 10, 2.5, 2.0), (32, 31, 1.0, 3.0), (5, 2, 2.5, 1.0)]:
            z = rand(self.rng, n, c, scale)
            loss = Loss(MCC, c, floats=[(P_TEMPERATURE, temp)])
            loss.matrix(A_STUDENT, z)
            g = np.zeros((n, c), np.float32)
            loss.output(A_GRAD_STUDENT, g)
            value = loss.fused(n)
            tz = t64(z, c)
            ref = tl_mcc(tz, temp)
            ref.backward()
            close(self, value[0], ref.item(), rtol=1e-4, what=f"loss {n}x{c}")
            close(self, g, tz.grad.numpy(), rtol=1e-3, atol=2e-6, what=f"grad {n}x{c}")

    def test_entropy_minimisation(self):
        # tllib.modules.entropy.entropy(predictions, reduction) takes probabilities
        # and adds 1e-5 inside the log: entropy(F.softmax(y, 1), "mean") is kdlib's
        # KD_LOSS_ENTROPY (logits, MEAN) up to sum_c p log(1 + 1e-5 / p) <= C * 1e-5;
        # without the epsilon it is the same function (gradient by autograd)
        for n, c, scale in [(64, 10, 2.0), (17, 31, 5.0), (1, 2, 1.0)]:
            y = rand(self.rng, n, c, scale)
            loss = Loss(ENTROPY, c)
            loss.matrix(A_STUDENT, y)
            g = np.zeros((n, c), np.float32)
            loss.output(A_GRAD_STUDENT, g)
            value = loss.fused(n)
            ty = t64(y, c)
            p = F.softmax(ty, dim=1)
            tl = (-p * torch.log(p + 1e-5)).sum(dim=1).mean()
            self.assertLessEqual(abs(value[0] - tl.item()), c * 1e-5 + 1e-6, f"tllib {n}x{c}")
            ref = (-p * torch.log(p)).sum(dim=1).mean()
            ref.backward()
            close(self, value[0], ref.item(), what=f"loss {n}x{c}")
            close(self, g, ty.grad.numpy(), rtol=1e-4, atol=1e-6, what=f"grad {n}x{c}")

    def test_worst_case_estimation(self):
        c = 8
        for nl, nu, eta, scale in [(16, 48, 1.0, 2.0), (7, 5, 2.0, 6.0)]:
            lm, la = rand(self.rng, nl, c), rand(self.rng, nl, c, scale)
            um, ua = rand(self.rng, nu, c), rand(self.rng, nu, c, scale)
            loss = Loss(WORST_CASE, c, ints=[(P_UNLABELED_ROWS, nu)], floats=[(P_ETA_PRIME, eta)])
            for role, a in [(A_LABELED_MAIN, lm), (A_LABELED_ADV, la), (A_UNLABELED_MAIN, um),
                            (A_UNLABELED_ADV, ua)]:
                loss.matrix(role, a)
            gl, gu = np.zeros((nl, c), np.float32), np.zeros((nu, c), np.float32)
            loss.output(A_GRAD_LABELED_ADV, gl)
            loss.output(A_GRAD_UNLABELED_ADV, gu)
            value = loss.fused(nl)
            tla, tua = t64(la, c), t64(ua, c)
            ref = tl_worst_case(torch.tensor(lm), tla, torch.tensor(um), tua, eta)
            ref.backward()
            close(self, value[0], ref.item(), rtol=1e-4, what="loss")
            close(self, gl, tla.grad.numpy(), rtol=1e-4, atol=1e-6, what="grad labeled")
            close(self, gu, tua.grad.numpy(), rtol=1e-4, atol=1e-6, what="grad unlabeled")


if __name__ == "__main__":
    result = unittest.main(exit=False, verbosity=2).result
    run, bad = result.testsRun, len(result.failures) + len(result.errors)
    print(f"{run - bad} passed, {bad} failed")
    sys.exit(1 if bad else 0)
