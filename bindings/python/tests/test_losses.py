"""Forward values and gradients of every functional loss against independent
PyTorch (float64, autograd) implementations of the definitions in
docs/losses.md and include/kdlib/loss.h: random shapes, extreme logits,
row-strided inputs, every reduction."""
import unittest

import numpy as np
import torch
import torch.nn.functional as F

import kdlib

D = torch.float64


# ---------------------------------------------------------------- helpers

def rand(rng, n, c, scale=2.0, strided=False):
    """float32 n x c logits; strided=True returns a row-strided view (ld = c + 3)."""
    ld = c + 3 if strided else c
    buf = (rng.standard_normal((n, ld)) * scale).astype(np.float32)
    return buf[:, :c] if strided else buf


def probs(rng, n, c):
    p = rng.uniform(0.0, 1.0, (n, c)) ** 3
    return (p / p.sum(1, keepdims=True)).astype(np.float32)


def t64(a, grad=True):
    return torch.tensor(np.ascontiguousarray(a), dtype=D, requires_grad=grad)


def close(tc, got, want, rtol=3e-5, atol=3e-6, what=""):
    got = np.asarray(got, np.float64)
    want = np.asarray(want, np.float64)
    tc.assertEqual(got.shape, want.shape, what)
    ok = np.allclose(got, want, rtol=rtol, atol=atol, equal_nan=True)
    diff = np.max(np.abs(got - want)) if got.size else 0.0
    tc.assertTrue(ok, "%s: max |diff| %g" % (what, diff))


def reduce(per, red, den):
    if red == "none":
        return per
    if red == "sum":
        return per.sum()
    return per.sum() / den if den > 0 else per.sum() * 0.0


def onehot_eps(y, c, eps, mode, ii):
    yy = torch.where(y == ii, torch.zeros_like(y), y)
    oh = F.one_hot(yy, c).to(D)
    if mode == "uniform":
        return (1 - eps) * oh + eps / c
    if c == 1:
        return oh
    return (1 - eps) * oh + eps / (c - 1) * (1 - oh)


def soft_ce(s, q):
    return -(q * F.log_softmax(s, 1)).sum(1)


# ------------------------------------------------------------- references

def ref_cross_entropy(s, y, eps, ii, red, w=None, mode="uniform"):
    c = s.shape[1]
    valid = (y != ii).to(D)
    per = soft_ce(s, onehot_eps(y, c, eps, mode, ii)) * valid
    if w is not None:
        per = per * w
    return reduce(per, red, valid.sum().item())


def ref_kl_distill(s, t, y, T, ws, wh, red, div="forward_kl", beta=0.5, t2=True, norm="batch",
                   eps=0.0, ii=-100, w=None):
    n, c = s.shape
    logq = F.log_softmax(s / T, 1)
    logp = F.log_softmax(t / T, 1)
    p, q = logp.exp(), logq.exp()
    if div == "forward_kl" or (div == "jsd" and beta == 0):
        d = (p * (logp - logq)).sum(1)
    elif div == "reverse_kl" or (div == "jsd" and beta == 1):
        d = (q * (logq - logp)).sum(1)
    else:
        logm = torch.logsumexp(torch.stack([np.log(beta) + logp, np.log(1 - beta) + logq]), 0)
        d = beta * (p * (logp - logm)).sum(1) + (1 - beta) * (q * (logq - logm)).sum(1)
    soft = d * (T * T if t2 else 1.0)
    if y is None:
        valid = torch.ones(n, dtype=D)
        hard = torch.zeros(n, dtype=D)
        den_soft = den_hard = n
    else:
        valid = (y != ii).to(D)
        hard = soft_ce(s, onehot_eps(y, c, eps, "uniform", ii)) * valid
        den_hard = valid.sum().item()
        if norm == "valid":
            soft = soft * valid
            den_soft = den_hard
        else:
            den_soft = n
    wv = torch.ones(n, dtype=D) if w is None else w
    if red == "none":
        return wv * (ws * soft + wh * hard)
    if red == "sum":
        return (wv * (ws * soft + wh * hard)).sum()
    total = ws * (wv * soft).sum() / den_soft if den_soft else 0.0 * soft.sum()
    if wh and den_hard:
        total = total + wh * (wv * hard).sum() / den_hard
    return total


def ref_logit_mse(s, t, y, ws, wh, red, ii=-100):
    n, c = s.shape
    soft = ((s - t) ** 2).mean(1)
    if y is None:
        hard, den_hard = torch.zeros(n, dtype=D), n
    else:
        valid = (y != ii).to(D)
        hard = soft_ce(s, onehot_eps(y, c, 0.0, "uniform", ii)) * valid
        den_hard = valid.sum().item()
    if red == "none":
        return ws * soft + wh * hard
    if red == "sum":
        return (ws * soft + wh * hard).sum()
    out = ws * soft.sum() / n
    if wh and den_hard:
        out = out + wh * hard.sum() / den_hard
    return out


def ref_mask(t32, thr, inclusive=False, class_thr=None):
    """conf, pseudo-label and mask decided in float32, as tllib on float32 logits."""
    conf, pl = F.softmax(torch.tensor(np.ascontiguousarray(t32)), 1).max(1)
    tau = torch.tensor(np.float32(thr)) if class_thr is None else torch.tensor(class_thr)[pl]
    mask = (conf >= tau) if inclusive else (conf > tau)
    return mask.to(D), pl


def ref_pseudo_label(s, pl, mask, red):
    per = F.cross_entropy(s, pl, reduction="none") * mask
    return reduce(per, red, s.shape[0])


def ref_strong_weak(s, t, mask, T, red):
    kl = F.kl_div(F.log_softmax(s / T, 1), F.softmax(t, 1), reduction="none").sum(1) * mask
    return reduce(kl, red, max(mask.sum().item(), 1.0))


def ref_consistency(x1, x2, logits, dist, mask, red):
    p1 = F.softmax(x1, 1) if logits else x1
    p2 = F.softmax(x2, 1) if logits else x2
    if dist == "l2":
        d = ((p1 - p2) ** 2).sum(1)
    elif dist == "kl":
        d = (torch.xlogy(p2, p2) - p2 * torch.log(p1)).sum(1)
    else:
        m = 0.5 * (p1 + p2)
        d = 0.5 * ((torch.xlogy(p1, p1) - p1 * torch.log(m)).sum(1)
                   + (torch.xlogy(p2, p2) - p2 * torch.log(m)).sum(1))
    if mask is not None:
        d = d * mask
    return reduce(d, red, x1.shape[0])


def ref_class_balance(p):
    c = p.shape[1]
    return F.binary_cross_entropy(p.mean(0), torch.full((c,), 1.0 / c, dtype=p.dtype))


def ref_mcc(z, T):
    n, c = z.shape
    pred = F.softmax(z / T, 1)
    ent = (-pred * torch.log(pred + 1e-5)).sum(1).detach()
    w = 1 + torch.exp(-ent)
    w = (n * w / w.sum()).unsqueeze(1)
    a = torch.mm((pred * w).t(), pred)
    a = a / a.sum(1)
    return (a.sum() - torch.trace(a)) / c


def ref_worst_case(y_l, y_l_adv, y_u, y_u_adv, eta, red="mean"):
    pl = y_l.argmax(1)
    pu = y_u.argmax(1)
    lt = F.cross_entropy(y_l_adv, pl, reduction=red)
    shifted = torch.log(torch.clamp(1.0 - F.softmax(y_u_adv, 1) + 1e-6, max=1.0))
    return eta * lt + F.nll_loss(shifted, pu, reduction=red)


def backward_of(ref):
    (ref.sum() if ref.dim() else ref).backward()


# ------------------------------------------------------------------ tests

class LossTest(unittest.TestCase):
    def setUp(self):
        self.rng = np.random.default_rng(20240607)

    def labels(self, n, c, ignored=0.2):
        y = self.rng.integers(0, c, n).astype(np.int32)
        y[self.rng.uniform(size=n) < ignored] = -100
        return y

    def check(self, r, ref, leaves, fields=("grad_student",), rtol=3e-5, atol=3e-6, what=""):
        close(self, r.loss, ref.detach().numpy(), rtol, atol, what + " loss")
        backward_of(ref)
        for f, leaf in zip(fields, leaves):
            close(self, getattr(r, f), leaf.grad.numpy(), rtol * 3, atol * 3, what + " " + f)


class CrossEntropy(LossTest):
    def test_labels_smoothing_ignore_reductions_strided(self):
        for n, c in [(1, 1), (7, 3), (64, 10), (5, 1000)]:
            for red in ("mean", "sum", "none"):
                for eps, strided, mode in [(0.0, False, "uniform"), (0.1, True, "uniform"),
                                           (0.2, False, "others")]:
                    s = rand(self.rng, n, c, strided=strided)
                    y = self.labels(n, c)
                    w = self.rng.uniform(0, 2, n).astype(np.float32)
                    r = kdlib.cross_entropy(s, y, eps, -100, red, smoothing_mode=mode, weights=w)
                    ts = t64(s)
                    ref = ref_cross_entropy(ts, torch.tensor(y, dtype=torch.long), eps, -100, red,
                                            torch.tensor(w, dtype=D), mode)
                    self.check(r, ref, [ts], what="%dx%d %s eps %g %s" % (n, c, red, eps, mode))

    def test_pytorch_f_cross_entropy_and_int64_labels(self):
        s = rand(self.rng, 32, 10)
        y = self.rng.integers(0, 10, 32)            # int64: converted to int32
        r = kdlib.cross_entropy(s, y, 0.1)
        ts = t64(s)
        ref = F.cross_entropy(ts, torch.tensor(y), label_smoothing=0.1)
        self.check(r, ref, [ts])

    def test_extreme_logits(self):
        s = rand(self.rng, 16, 7, scale=1.0)
        s[:, 0] = 1e4
        s[::2, 3] = -1e4
        y = self.rng.integers(0, 7, 16).astype(np.int32)
        r = kdlib.cross_entropy(s, y)
        self.assertTrue(np.isfinite(r.loss) and np.all(np.isfinite(r.grad_student)))
        ts = t64(s)
        self.check(r, F.cross_entropy(ts, torch.tensor(y, dtype=torch.long)), [ts], rtol=1e-5)

    def test_forward_only_and_inputs_untouched(self):
        s = rand(self.rng, 9, 4)
        keep = s.copy()
        y = self.labels(9, 4)
        r = kdlib.cross_entropy(s, y, compute_grad=False)
        self.assertIsNone(r.grad_student)
        self.assertEqual(r.loss, kdlib.cross_entropy(s, y).loss)
        self.assertTrue(np.array_equal(s, keep))


class SoftCrossEntropy(LossTest):
    def test_probability_targets(self):
        for n, c, red in [(20, 5, "mean"), (3, 50, "sum"), (11, 2, "none")]:
            s = rand(self.rng, n, c, strided=True)
            q = probs(self.rng, n, c)
            q[0] *= 0.5            # a row that does not sum to 1 is used as is
            r = kdlib.soft_cross_entropy(s, q, red)
            ts = t64(s)
            ref = reduce(soft_ce(ts, torch.tensor(q, dtype=D)), red, n)
            self.check(r, ref, [ts], what=red)

    def test_teacher_target_temperature_and_teacher_list(self):
        n, c = 24, 6
        s, t1, t2 = rand(self.rng, n, c), rand(self.rng, n, c), rand(self.rng, n, c, strided=True)
        for teacher, tw, tref in [(t1, None, t1.astype(np.float64)),
                                  ([t1, t2], [1.0, 3.0], (t1 + 3.0 * t2) / 4.0)]:
            r = kdlib.soft_cross_entropy(s, teacher=teacher, temperature=2.5, teacher_weights=tw)
            ts = t64(s)
            ref = soft_ce(ts, F.softmax(torch.tensor(tref, dtype=D) / 2.5, 1)).mean()
            self.check(r, ref, [ts])

    def test_soft_label_mixing(self):
        n, c = 30, 8
        s, q, y = rand(self.rng, n, c), probs(self.rng, n, c), self.labels(n, c)
        for red in ("mean", "sum", "none"):
            r = kdlib.soft_cross_entropy(s, q, red, labels=y, label_weight=0.7, label_smoothing=0.1)
            ts = t64(s)
            yt = torch.tensor(y, dtype=torch.long)
            valid = (yt != -100).to(D)
            mix = 0.7 * onehot_eps(yt, c, 0.1, "uniform", -100) + 0.3 * torch.tensor(q, dtype=D)
            ref = reduce(soft_ce(ts, mix) * valid, red, valid.sum().item())
            self.check(r, ref, [ts], what=red)


class KLDistill(LossTest):
    def test_hinton_pytorch_expression(self):
        for n, c, T, alpha in [(32, 10, 4.0, 0.9), (1, 3, 1.0, 0.5), (64, 100, 2.0, 0.1)]:
            s, t = rand(self.rng, n, c), rand(self.rng, n, c, 3.0)
            y = self.rng.integers(0, c, n).astype(np.int32)
            r = kdlib.kl_distill(s, t, y, temperature=T, alpha=alpha)
            ts = t64(s)
            tt = torch.tensor(t, dtype=D)
            ref = alpha * T * T * F.kl_div(F.log_softmax(ts / T, 1), F.softmax(tt / T, 1),
                                           reduction="batchmean") \
                + (1 - alpha) * F.cross_entropy(ts, torch.tensor(y, dtype=torch.long))
            self.check(r, ref, [ts], what="%dx%d" % (n, c))

    def test_options_reductions_strided(self):
        n, c = 40, 12
        for red in ("batchmean", "sum", "none"):
            for div, beta in [("forward_kl", 0.5), ("reverse_kl", 0.5), ("jsd", 0.5), ("jsd", 0.2),
                              ("jsd", 0.0), ("jsd", 1.0)]:
                for norm, t2, labels in [("batch", True, True), ("valid", False, True),
                                         ("batch", True, False)]:
                    s, t = rand(self.rng, n, c, strided=True), rand(self.rng, n, c, 3.0, strided=True)
                    y = self.labels(n, c) if labels else None
                    w = self.rng.uniform(0, 1, n).astype(np.float32)
                    r = kdlib.kl_distill(s, t, y, temperature=3.0, alpha=0.7, reduction=red,
                                         divergence=div, jsd_beta=beta, normalization=norm,
                                         t2_scaling=t2, label_smoothing=0.05, weights=w)
                    ts = t64(s)
                    ref = ref_kl_distill(ts, torch.tensor(t, dtype=D),
                                         None if y is None else torch.tensor(y, dtype=torch.long),
                                         3.0, 0.7, 0.3, "mean" if red == "batchmean" else red, div,
                                         beta, t2, norm, 0.05, -100, torch.tensor(w, dtype=D))
                    self.check(r, ref, [ts], rtol=5e-5, atol=5e-6,
                               what="%s %s %g %s t2=%s labels=%s" % (red, div, beta, norm, t2, labels))

    def test_no_labels_alpha_keeps_soft_weight(self):
        s, t = rand(self.rng, 10, 5), rand(self.rng, 10, 5)
        full = kdlib.kl_distill(s, t, temperature=2.0).loss
        self.assertAlmostEqual(kdlib.kl_distill(s, t, temperature=2.0, alpha=0.9).loss, 0.9 * full,
                               places=5)

    def test_several_teachers_weighted(self):
        n, c = 16, 9
        s = rand(self.rng, n, c)
        ts_ = [rand(self.rng, n, c, strided=k == 1) for k in range(3)]
        wts = np.array([0.5, 0.25, 2.0], np.float32)
        r = kdlib.kl_distill(s, ts_, temperature=2.0, teacher_weights=wts)
        avg = sum(float(wk) * t.astype(np.float64) for wk, t in zip(wts, ts_)) / wts.sum()
        ts = t64(s)
        self.check(r, ref_kl_distill(ts, torch.tensor(avg), None, 2.0, 1.0, 0.0, "mean"), [ts])
        r2 = kdlib.kl_distill(s, ts_, temperature=2.0)
        avg2 = sum(t.astype(np.float64) for t in ts_) / 3
        ts = t64(s)
        self.check(r2, ref_kl_distill(ts, torch.tensor(avg2), None, 2.0, 1.0, 0.0, "mean"), [ts])

    def test_extreme_logits(self):
        n, c = 12, 10
        s, t = rand(self.rng, n, c, 1e3), rand(self.rng, n, c, 1e3)
        s[0, 0], t[1, 2], s[2] = 1e4, -1e4, -1e4
        y = self.rng.integers(0, c, n).astype(np.int32)
        r = kdlib.kl_distill(s, t, y, temperature=4.0, alpha=0.9, reduction="none")
        self.assertTrue(np.all(np.isfinite(r.loss)) and np.all(np.isfinite(r.grad_student)))
        ts = t64(s)
        ref = ref_kl_distill(ts, torch.tensor(t, dtype=D), torch.tensor(y, dtype=torch.long), 4.0,
                             0.9, 0.1, "none")
        self.check(r, ref, [ts], rtol=1e-4, atol=1e-2)

    def test_soft_and_hard_weights_override_alpha(self):
        s, t, y = rand(self.rng, 8, 4), rand(self.rng, 8, 4), self.labels(8, 4, 0.0)
        r = kdlib.kl_distill(s, t, y, temperature=2.0, soft_weight=1.8, hard_weight=0.1)
        ts = t64(s)
        ref = ref_kl_distill(ts, torch.tensor(t, dtype=D), torch.tensor(y, dtype=torch.long), 2.0,
                             1.8, 0.1, "mean")
        self.check(r, ref, [ts])


class LogitMSE(LossTest):
    def test_mse_reductions_and_label_mix(self):
        for n, c in [(10, 4), (1, 1), (33, 17)]:
            for red in ("mean", "sum", "none"):
                for labels in (False, True):
                    s, t = rand(self.rng, n, c, strided=True), rand(self.rng, n, c)
                    y = self.labels(n, c) if labels else None
                    r = kdlib.logit_mse(s, t, red, labels=y, alpha=0.6 if labels else None)
                    ts = t64(s)
                    ref = ref_logit_mse(ts, torch.tensor(t, dtype=D),
                                        None if y is None else torch.tensor(y, dtype=torch.long),
                                        0.6 if labels else 1.0, 0.4 if labels else 0.0, red)
                    self.check(r, ref, [ts], what="%dx%d %s %s" % (n, c, red, labels))

    def test_mean_is_f_mse_loss(self):
        s, t = rand(self.rng, 12, 6), rand(self.rng, 12, 6)
        ts = t64(s)
        self.check(kdlib.logit_mse(s, t), F.mse_loss(ts, torch.tensor(t, dtype=D)), [ts])


class PseudoLabel(LossTest):
    def test_mask_labels_loss_gradient(self):
        n, c = 64, 10
        for thr, inclusive, per_class, red in [(0.5, False, False, "mean"), (0.7, True, False, "sum"),
                                               (0.9, False, True, "none")]:
            s, t = rand(self.rng, n, c, strided=True), rand(self.rng, n, c, 4.0, strided=True)
            cthr = self.rng.uniform(0.2, 0.9, c).astype(np.float32) if per_class else None
            r = kdlib.pseudo_label(s, t, thr, cthr, inclusive=inclusive, reduction=red)
            mask, pl = ref_mask(t, thr, inclusive, cthr)
            self.assertTrue(np.array_equal(r.mask, mask.numpy()), "mask")
            self.assertTrue(np.array_equal(r.pseudo_labels, pl.numpy()), "pseudo labels")
            self.assertTrue(0 < r.mask.sum() < n)
            ts = t64(s)
            self.check(r, ref_pseudo_label(ts, pl, mask, red), [ts], what=red)

    def test_strict_versus_inclusive_at_confidence_one(self):
        s = rand(self.rng, 4, 3)
        t = np.array([[1e4, 0, 0]] * 4, np.float32)     # confidence exactly 1
        self.assertEqual(kdlib.pseudo_label(s, t, 1.0).mask.sum(), 0)
        self.assertEqual(kdlib.pseudo_label(s, t, 1.0, inclusive=True).mask.sum(), 4)


class StrongWeak(LossTest):
    def test_tllib_definition(self):
        n, c = 48, 7
        for thr, temp, red in [(0.6, 1.0, "mean"), (0.7, 0.4, "sum"), (0.95, 2.0, "none"),
                               (0.7, 0.85, "mean")]:
            s, t = rand(self.rng, n, c, strided=True), rand(self.rng, n, c, 4.0)
            r = kdlib.strong_weak_consistency(s, t, thr, temp, reduction=red)
            mask, pl = ref_mask(t, thr)
            self.assertTrue(np.array_equal(r.mask, mask.numpy()))
            self.assertTrue(np.array_equal(r.pseudo_labels, pl.numpy()))
            ts = t64(s)
            self.check(r, ref_strong_weak(ts, torch.tensor(t, dtype=D), mask, temp, red), [ts],
                       what="%g %g %s" % (thr, temp, red))


class Consistency(LossTest):
    def test_distances_inputs_reductions_both_gradients(self):
        n, c = 40, 6
        for logits in (True, False):
            for dist in ("l2", "kl", "js"):
                for red in ("mean", "sum", "none"):
                    a, b = rand(self.rng, n, c, strided=True), rand(self.rng, n, c)
                    if not logits:
                        a, b = probs(self.rng, n, c), probs(self.rng, n, c)
                    mask = (self.rng.uniform(size=n) > 0.3).astype(np.float32)
                    r = kdlib.consistency(a, b, dist, "logits" if logits else "probabilities",
                                          mask, red)
                    ta, tb = t64(a), t64(b)
                    ref = ref_consistency(ta, tb, logits, dist, torch.tensor(mask, dtype=D), red)
                    self.check(r, ref, [ta, tb], ("grad_student", "grad_teacher"), rtol=5e-5,
                               atol=1e-5, what="logits %s %s %s" % (logits, dist, red))
                    self.assertIs(r.grad_p1, r.grad_student)
                    self.assertIs(r.grad_p2, r.grad_teacher)


class BatchLosses(LossTest):
    def test_class_balance(self):
        for n, c, logits, scale in [(50, 10, True, 2.0), (33, 4, False, 1.0), (8, 3, True, 30.0),
                                    (1, 2, True, 1.0)]:
            x = rand(self.rng, n, c, scale, strided=logits) if logits else probs(self.rng, n, c)
            r = kdlib.class_balance(x, "logits" if logits else "probabilities")
            tx = t64(x)
            ref = ref_class_balance(F.softmax(tx, 1) if logits else tx)
            self.check(r, ref, [tx], rtol=1e-4, atol=1e-6, what="%dx%d" % (n, c))

    def test_mcc(self):
        for n, c, temp, scale in [(64, 10, 2.5, 2.0), (32, 31, 1.0, 3.0), (5, 2, 2.5, 1.0)]:
            z = rand(self.rng, n, c, scale, strided=True)
            r = kdlib.mcc(z, temp)
            tz = t64(z)
            self.check(r, ref_mcc(tz, temp), [tz], rtol=1e-4, atol=3e-6, what="%dx%d" % (n, c))

    def test_worst_case_estimation(self):
        c = 8
        for nl, nu, eta, scale, red in [(16, 48, 1.0, 2.0, "mean"), (7, 5, 2.0, 6.0, "sum"),
                                        (3, 9, 2.0, 30.0, "mean")]:
            lm, la = rand(self.rng, nl, c), rand(self.rng, nl, c, scale, strided=True)
            um, ua = rand(self.rng, nu, c), rand(self.rng, nu, c, scale)
            r = kdlib.worst_case_estimation(lm, la, um, ua, eta, red)
            tla, tua = t64(la), t64(ua)
            ref = ref_worst_case(torch.tensor(lm, dtype=D), tla, torch.tensor(um, dtype=D), tua, eta, red)
            self.check(r, ref, [tla, tua], ("grad_y_l_adv", "grad_y_u_adv"), rtol=1e-4, atol=1e-6,
                       what="%d %d %s" % (nl, nu, red))


class LowLevelLoss(LossTest):
    def test_handle_backward_matches_fused_and_reuse(self):
        n, c = 20, 5
        s, t = rand(self.rng, n, c), rand(self.rng, n, c)
        with kdlib.Loss(kdlib.losses_constants.KL_DISTILL, c) as h:
            C = kdlib.losses_constants
            h.set(C.PARAM_TEMPERATURE, 2.0)
            self.assertEqual(h.get(C.PARAM_TEMPERATURE), 2.0)
            h.set(C.PARAM_REDUCTION, C.REDUCTION_NONE)
            h.bind_matrix(C.ARG_STUDENT, s)
            h.bind_matrix(C.ARG_TEACHER, t)
            g = np.zeros((n, c), np.float32)
            h.bind_output(C.ARG_GRAD_STUDENT, g)
            up = self.rng.uniform(0, 2, n).astype(np.float32)
            h.backward(n, up)
            ts = t64(s)
            ref = ref_kl_distill(ts, torch.tensor(t, dtype=D), None, 2.0, 1.0, 0.0, "none")
            (ref * torch.tensor(up, dtype=D)).sum().backward()
            close(self, g, ts.grad.numpy(), 1e-4, 1e-5, "backward with upstream")
            loss = h.forward(n)
            close(self, loss, ref.detach().numpy(), what="forward")
        lo, hi, open_low = kdlib.param_bounds(kdlib.losses_constants.KL_DISTILL,
                                              kdlib.losses_constants.PARAM_TEMPERATURE)
        self.assertEqual(lo, 1e-6)  # the smallest temperature (issue 16)
        self.assertFalse(open_low)

    def test_threads_give_identical_results(self):
        s, t = rand(self.rng, 300, 20), rand(self.rng, 300, 20)
        a = kdlib.kl_distill(s, t, temperature=3.0, threads=1)
        b = kdlib.kl_distill(s, t, temperature=3.0, threads=2)
        self.assertEqual(a.loss, b.loss)
        self.assertTrue(np.array_equal(a.grad_student, b.grad_student))


if __name__ == "__main__":
    unittest.main()
