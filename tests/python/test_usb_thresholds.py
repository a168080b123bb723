#!/usr/bin/env python3
"""kdlib's FreeMatch, SoftMatch and AdaMatch (kd_threshold, through
kdlib.Thresholds) against PyTorch re-statements of USB's hooks in float64:
FreeMatchThresholingHook (semilearn/algorithms/freematch/utils.py),
DistAlignEMAHook with the uniform target (semilearn/algorithms/hooks/
dist_align.py) and SoftMatchWeightingHook (semilearn/algorithms/softmatch/
utils.py), DistAlignEMAHook with the 'model' target and
AdaMatchThresholdingHook (semilearn/algorithms/adamatch/) and
DashThresholdingHook (semilearn/algorithms/dash/utils.py, on the logits with
USB's ce_loss), called in USB's order (update, then mask / weights) over many
random batches of softmax rows; DebiasPL against the authors'
main_DebiasPL.py (causal_inference, update_qhat: mask, then update);
and UDA's training-signal annealing (kdlib.tsa_threshold, kdlib.tsa_mask)
against USB's UDA.TSA and its supervised mask (semilearn/algorithms/uda/).  The rows are float32 (what kdlib receives);
the reference promotes them to float64.

Exit code 77 (CTest SKIP_RETURN_CODE) when torch or numpy is missing.
"""
import sys
import unittest

try:
    import numpy as np
    import torch
except ImportError as exc:  # pragma: no cover - depends on the machine
    print(f"skipping: {exc}")
    sys.exit(77)

import kdlib  # noqa: E402  (PYTHONPATH=bindings/python, KDLIB_LIBRARY set by CTest)

torch.set_default_dtype(torch.float64)


class FreeMatchHook:
    """USB's FreeMatchThresholingHook."""

    def __init__(self, num_classes, momentum, clip_thresh, use_quantile=False):
        self.m = momentum
        self.clip_thresh = clip_thresh
        self.use_quantile = use_quantile
        self.p_model = torch.ones(num_classes) / num_classes
        self.label_hist = torch.ones(num_classes) / num_classes
        self.time_p = self.p_model.mean()

    def update(self, probs):
        max_probs, max_idx = torch.max(probs, dim=-1, keepdim=True)
        if self.use_quantile:
            self.time_p = self.time_p * self.m + (1 - self.m) * torch.quantile(max_probs, 0.8)
        else:
            self.time_p = self.time_p * self.m + (1 - self.m) * max_probs.mean()
        if self.clip_thresh:
            self.time_p = torch.clip(self.time_p, 0.0, 0.95)
        self.p_model = self.p_model * self.m + (1 - self.m) * probs.mean(dim=0)
        hist = torch.bincount(max_idx.reshape(-1), minlength=self.p_model.shape[0]).to(
            self.p_model.dtype)
        self.label_hist = self.label_hist * self.m + (1 - self.m) * (hist / hist.sum())

    def masking(self, probs):
        self.update(probs)
        max_probs, max_idx = probs.max(dim=-1)
        mod = self.p_model / torch.max(self.p_model, dim=-1)[0]
        thr = self.time_p * mod[max_idx]
        return max_probs.ge(thr).to(max_probs.dtype), (max_probs - thr).abs()


class DistAlignUniform:
    """USB's DistAlignEMAHook with p_target_type='uniform' (target='model':
    p_target is the EMA of the labelled batches' mean rows, from uniform)."""

    def __init__(self, num_classes, momentum, target="uniform"):
        self.m = momentum
        self.p_target = torch.ones(num_classes) / num_classes
        self.update_p_target = target == "model"
        self.p_model = None

    def dist_align(self, probs, probs_lb=None):
        if self.p_model is None:
            self.p_model = torch.mean(probs, dim=0)
        else:
            self.p_model = self.p_model * self.m + torch.mean(probs, dim=0) * (1 - self.m)
        if self.update_p_target:
            self.p_target = self.p_target * self.m + torch.mean(probs_lb, dim=0) * (1 - self.m)
        aligned = probs * (self.p_target + 1e-6) / (self.p_model + 1e-6)
        return aligned / aligned.sum(dim=-1, keepdim=True)


class SoftMatchHook:
    """USB's SoftMatchWeightingHook (its per-class initial mean, written
    self.args.num_classes in USB, is 1 / num_classes)."""

    def __init__(self, num_classes, n_sigma, momentum, per_class):
        self.num_classes = num_classes
        self.n_sigma = n_sigma
        self.per_class = per_class
        self.m = momentum
        if not per_class:
            self.mu = torch.tensor(1.0 / num_classes)
            self.var = torch.tensor(1.0)
        else:
            self.mu = torch.ones(num_classes) / num_classes
            self.var = torch.ones(num_classes)

    def update(self, probs):
        max_probs, max_idx = probs.max(dim=-1)
        if not self.per_class:
            self.mu = self.m * self.mu + (1 - self.m) * torch.mean(max_probs).item()
            self.var = self.m * self.var + (1 - self.m) * torch.var(max_probs, unbiased=True).item()
        else:
            mu = torch.zeros_like(self.mu)
            var = torch.ones_like(self.var)
            for i in range(self.num_classes):
                prob = max_probs[max_idx == i]
                if len(prob) > 1:
                    mu[i] = torch.mean(prob)
                    var[i] = torch.var(prob, unbiased=True)
            self.mu = self.m * self.mu + (1 - self.m) * mu
            self.var = self.m * self.var + (1 - self.m) * var

    def masking(self, probs):
        self.update(probs)
        max_probs, max_idx = probs.max(dim=-1)
        mu = self.mu[max_idx] if self.per_class else self.mu
        var = self.var[max_idx] if self.per_class else self.var
        return torch.exp(-((torch.clamp(max_probs - mu, max=0.0) ** 2)
                           / (2 * var / (self.n_sigma ** 2))))


def adamatch_masking(probs_lb, probs_ulb, p_cutoff):
    """USB's AdaMatchThresholdingHook on probabilities (softmax_x_* False)."""
    max_probs, _ = probs_lb.max(dim=-1)
    cut = max_probs.mean() * p_cutoff
    max_probs, _ = probs_ulb.max(dim=-1)
    return max_probs.ge(cut).to(max_probs.dtype), (max_probs - cut).abs()


def batches(seed, c, steps, scale, max_batch=64):
    g = torch.Generator().manual_seed(seed)
    bias = torch.linspace(0.0, 1.0, c)
    for _ in range(steps):
        n = int(torch.randint(2, max_batch, (1,), generator=g))
        logits = torch.randn(n, c, generator=g) * scale + bias
        p32 = torch.softmax(logits, dim=-1).float()
        yield p32.numpy(), p32.double()


class FreeMatchParity(unittest.TestCase):
    def run_case(self, c, m, clip, scale, steps, seed, use_quantile=False):
        th = kdlib.Thresholds("freematch", 1000, c, momentum=m, clip=0.95 if clip else 1.0,
                              use_quantile=use_quantile)
        ref = FreeMatchHook(c, m, clip, use_quantile)
        used = total = 0
        for p_np, p in batches(seed, c, steps, scale):
            th.update_probs(p_np)
            mask, margin = ref.masking(p)
            w, pl = th.weights_probs(p_np)
            np.testing.assert_array_equal(pl, p.argmax(dim=-1).numpy())
            keep = margin.numpy() > 1e-6
            np.testing.assert_array_equal(w[keep], mask.numpy()[keep])
            used += int(mask.sum())
            total += len(mask)
            np.testing.assert_allclose(th.state("global_threshold")[0], float(ref.time_p),
                                       rtol=1e-6)
            np.testing.assert_allclose(th.state("class_probs"), ref.p_model.numpy(), rtol=1e-6)
            np.testing.assert_allclose(th.state("label_histogram"), ref.label_hist.numpy(),
                                       rtol=1e-6, atol=1e-7)
        th.close()
        return used, total

    def test_usb_default_momentum(self):
        self.run_case(10, 0.999, False, 2.0, 60, 1)

    def test_fast_momentum_and_clip(self):
        used, total = self.run_case(5, 0.9, False, 2.0, 80, 2)
        self.assertTrue(0 < used < total)
        used, total = self.run_case(3, 0.5, True, 6.0, 40, 3)
        self.assertTrue(0 < used < total)

    def test_quantile(self):
        used, total = self.run_case(5, 0.9, False, 2.0, 80, 8, use_quantile=True)
        self.assertTrue(0 < used < total)
        self.run_case(4, 0.5, True, 5.0, 40, 9, use_quantile=True)


class SoftMatchParity(unittest.TestCase):
    def run_case(self, c, m, n_sigma, per_class, scale, steps, seed):
        th = kdlib.Thresholds("softmatch", 1000, c, momentum=m, n_sigma=n_sigma,
                              per_class=per_class)
        align = DistAlignUniform(c, m)
        ref = SoftMatchHook(c, n_sigma, m, per_class)
        soft = 0
        for p_np, p in batches(seed, c, steps, scale):
            th.update_probs(p_np)
            want = ref.masking(align.dist_align(p)).numpy()
            w, pl = th.weights_probs(p_np)
            np.testing.assert_array_equal(pl, p.argmax(dim=-1).numpy())
            np.testing.assert_allclose(w, want, rtol=2e-5, atol=1e-6)
            soft += int(((want > 1e-3) & (want < 1)).sum())
            np.testing.assert_allclose(th.state("class_probs"), align.p_model.numpy(), rtol=1e-6)
            if per_class:
                np.testing.assert_allclose(th.state("class_conf_mean"), ref.mu.numpy(),
                                           rtol=1e-6, atol=1e-7)
                np.testing.assert_allclose(th.state("class_conf_var"), ref.var.numpy(),
                                           rtol=1e-6, atol=1e-7)
            else:
                np.testing.assert_allclose(th.state("conf_mean")[0], float(ref.mu), rtol=1e-6)
                np.testing.assert_allclose(th.state("conf_var")[0], float(ref.var), rtol=1e-6)
        th.close()
        return soft

    def test_usb_defaults(self):
        self.run_case(10, 0.999, 2.0, False, 2.0, 60, 4)

    def test_global_fast_momentum(self):
        self.assertGreater(self.run_case(5, 0.8, 2.0, False, 1.5, 60, 5), 100)

    def test_per_class(self):
        self.assertGreater(self.run_case(6, 0.9, 2.0, True, 2.0, 60, 6), 100)
        self.run_case(12, 0.999, 3.0, True, 2.5, 30, 7)


class AdaMatchParity(unittest.TestCase):
    def run_case(self, c, m, p_cutoff, scale, steps, seed):
        th = kdlib.Thresholds("adamatch", 1000, c, momentum=m, threshold=p_cutoff)
        align = DistAlignUniform(c, m, target="model")
        used = total = moved = 0
        labelled = batches(seed + 100, c, steps, 1.5 * scale, max_batch=32)
        for (p_np, p), (l_np, l) in zip(batches(seed, c, steps, scale), labelled):
            th.update_labeled_probs(l_np)
            th.update_probs(p_np)
            aligned = align.dist_align(p, l)
            mask, margin = adamatch_masking(l, aligned, p_cutoff)
            w, pl = th.weights_probs(p_np)
            top2 = aligned.topk(2, dim=-1).values
            clear = (top2[:, 0] - top2[:, 1]).numpy() > 1e-6
            np.testing.assert_array_equal(pl[clear], aligned.argmax(dim=-1).numpy()[clear])
            moved += int((aligned.argmax(dim=-1) != p.argmax(dim=-1)).sum())
            keep = margin.numpy() > 1e-6
            np.testing.assert_array_equal(w[keep], mask.numpy()[keep])
            used += int(mask.sum())
            total += len(mask)
            np.testing.assert_allclose(th.state("class_probs"), align.p_model.numpy(), rtol=1e-6)
            np.testing.assert_allclose(th.state("target_probs"), align.p_target.numpy(),
                                       rtol=1e-6)
            np.testing.assert_allclose(th.state("global_threshold")[0],
                                       float(l.max(dim=-1)[0].mean() * p_cutoff), rtol=1e-6)
        th.close()
        return used, total, moved

    def test_usb_defaults(self):
        used, total, _ = self.run_case(10, 0.999, 0.95, 3.0, 60, 11)
        self.assertTrue(0 < used < total)

    def test_fast_momentum_moves_labels(self):
        used, total, moved = self.run_case(5, 0.8, 0.9, 2.0, 60, 12)
        self.assertTrue(0 < used < total)
        self.assertGreater(moved, 0)


def usb_ce_loss(logits, targets):
    """USB's ce_loss(..., reduction='none') (semilearn/core/criterions)."""
    log_pred = torch.nn.functional.log_softmax(logits, dim=-1)
    if logits.shape == targets.shape:
        return torch.sum(-targets * log_pred, dim=1)
    return torch.nn.functional.nll_loss(log_pred, targets, reduction="none")


class DashHook:
    """USB's DashThresholdingHook; `it` plays algorithm.it (one step per masking)."""

    def __init__(self, rho_init, rho_min, gamma, C, T, period):
        self.rho_init, self.rho_min, self.gamma, self.C, self.T = rho_init, rho_min, gamma, C, T
        self.period = period
        self.rho_update_cnt = 0
        self.rho = None
        self.it = 0
        self.use_hard_label = False

    def update(self):
        if self.it % self.period == 0:
            self.rho = self.C * (self.gamma ** -self.rho_update_cnt) * self.rho_init
            self.rho = max(self.rho, self.rho_min)
            self.rho_update_cnt += 1
        self.use_hard_label = self.rho == self.rho_min

    def masking(self, logits):
        self.update()
        if self.use_hard_label:
            pseudo_label = torch.argmax(logits, dim=-1)
        else:
            pseudo_label = torch.softmax(logits / self.T, dim=-1)
        loss_w = usb_ce_loss(logits, pseudo_label)
        self.it += 1
        return loss_w.le(self.rho).to(logits.dtype), (loss_w - self.rho).abs()


def logit_batches(seed, c, steps, scale, tail=0.0, max_batch=64):
    """(float32 softmax rows for kdlib, float64 logits for the reference)."""
    g = torch.Generator().manual_seed(seed)
    bias = torch.linspace(tail, 0.0, c) if tail else torch.linspace(0.0, 1.0, c)
    for _ in range(steps):
        n = int(torch.randint(2, max_batch, (1,), generator=g))
        logits = torch.randn(n, c, generator=g) * scale + bias
        yield torch.softmax(logits, dim=-1).float().numpy(), logits


class DashParity(unittest.TestCase):
    worst = {"rho": 0.0, "margin_skipped": 0}

    def run_case(self, c, rho_init, gamma, C, rho_min, T, period, scale, steps, seed):
        th = kdlib.Thresholds("dash", 1, c, rho_init=rho_init, gamma=gamma, dash_c=C,
                              rho_min=rho_min, temperature=T, period=period)
        ref = DashHook(rho_init, rho_min, gamma, C, T, period)
        kept = total = hard = 0
        for p_np, z in logit_batches(seed, c, steps, scale):
            th.update_probs(p_np)
            mask, margin = ref.masking(z)
            w, pl = th.weights_probs(p_np)
            self.assertEqual(th.state("hard_label"), int(ref.use_hard_label))
            self.assertEqual(th.state("rho_updates"), ref.rho_update_cnt)
            self.assertEqual(th.state("updates"), ref.it)
            DashParity.worst["rho"] = max(DashParity.worst["rho"],
                                          abs(float(th.state("rho")[0]) - ref.rho) / ref.rho)
            np.testing.assert_allclose(th.state("rho")[0], ref.rho, rtol=1e-7)
            keep = margin.numpy() > 1e-6
            DashParity.worst["margin_skipped"] += int((~keep).sum())
            np.testing.assert_array_equal(w[keep], mask.numpy()[keep])
            np.testing.assert_array_equal(pl, z.argmax(dim=-1).numpy())
            kept += int(mask.sum())
            total += len(mask)
            hard += ref.use_hard_label
        th.close()
        return kept, total, hard

    def test_usb_constants_short_period(self):
        kept, total, hard = self.run_case(10, 1.2, 1.27, 1.0001, 0.05, 0.5, 4, 3.0, 80, 21)
        self.assertTrue(0 < kept < total and 0 < hard < 80)

    def test_fast_schedule(self):
        kept, total, hard = self.run_case(5, 0.9, 1.5, 1.0, 0.2, 0.5, 2, 2.0, 40, 22)
        self.assertTrue(0 < kept < total and 0 < hard < 40)

    def test_temperature_one_every_update(self):
        kept, total, hard = self.run_case(4, 0.8, 1.1, 1.0001, 0.1, 1.0, 1, 2.5, 40, 23)
        self.assertTrue(0 < kept < total and 0 < hard < 40)

    @classmethod
    def tearDownClass(cls):
        print("dash: max relative rho difference %.3g, rows within 1e-6 of rho not compared: %d"
              % (cls.worst["rho"], cls.worst["margin_skipped"]), file=sys.stderr)


class DebiasPLReference:
    """The authors' initial_qhat, causal_inference and update_qhat (masked_qhat off)."""

    def __init__(self, c, m, tau, threshold):
        self.qhat = torch.ones(1, c) / c
        self.m, self.tau, self.threshold = m, tau, threshold

    def step(self, logits_u_w):
        pseudo_label = torch.softmax(logits_u_w - self.tau * torch.log(self.qhat), dim=1)
        max_probs, pseudo_targets_u = torch.max(pseudo_label, dim=-1)
        mask = max_probs.ge(self.threshold).float()
        mean_prob = torch.softmax(logits_u_w, dim=-1).mean(dim=0)
        self.qhat = self.m * self.qhat + (1 - self.m) * mean_prob
        top2 = pseudo_label.topk(2, dim=-1).values
        return mask, pseudo_targets_u, (max_probs - self.threshold).abs(), top2[:, 0] - top2[:, 1]


class DebiasPLParity(unittest.TestCase):
    worst = {"p_hat": 0.0, "margin": 0.0}

    def run_case(self, c, m, tau, threshold, scale, tail, steps, seed):
        th = kdlib.Thresholds("debiaspl", 1, c, momentum=m, debias_tau=tau, threshold=threshold)
        ref = DebiasPLReference(c, m, tau, threshold)
        kept = total = moved = 0
        for p_np, z in logit_batches(seed, c, steps, scale, tail=tail):
            w, pl = th.weights_probs(p_np)
            mask, labels, margin, gap = ref.step(z)
            th.update_probs(p_np)
            clear = gap.numpy() > 1e-6
            np.testing.assert_array_equal(pl[clear], labels.numpy()[clear])
            keep = margin.numpy() > 1e-6
            np.testing.assert_array_equal(w[keep], mask.numpy()[keep])
            moved += int((labels != z.argmax(dim=-1)).sum())
            kept += int(mask.sum())
            total += len(mask)
            q = ref.qhat.reshape(-1).numpy()
            DebiasPLParity.worst["p_hat"] = max(DebiasPLParity.worst["p_hat"],
                                                float(np.max(np.abs(th.state("class_probs") - q))))
            np.testing.assert_allclose(th.state("class_probs"), q, rtol=1e-6, atol=1e-9)
            # the adaptive margin: the strong logits + tau log p_hat, as the code
            dl = torch.log(ref.qhat.reshape(-1))
            mine = th.debias_tau * np.log(th.state("class_probs").astype(np.float64))
            DebiasPLParity.worst["margin"] = max(DebiasPLParity.worst["margin"],
                                                 float(np.max(np.abs(mine - tau * dl.numpy()))))
        th.close()
        return kept, total, moved

    def test_paper_constants(self):
        kept, total, _ = self.run_case(10, 0.999, 0.4, 0.95, 3.0, 3.0, 60, 31)
        self.assertTrue(0 < kept < total)

    def test_fast_momentum_moves_labels_to_the_tail(self):
        kept, total, moved = self.run_case(6, 0.8, 0.4, 0.7, 2.0, 4.0, 60, 32)
        self.assertTrue(0 < kept < total)
        self.assertGreater(moved, 0)

    def test_code_default_tau(self):
        kept, total, moved = self.run_case(8, 0.9, 1.0, 0.8, 2.5, 5.0, 40, 33)
        self.assertTrue(0 < kept < total and moved > 0)

    @classmethod
    def tearDownClass(cls):
        print("debiaspl: max |p_hat - qhat| %.3g, max |margin difference| %.3g"
              % (cls.worst["p_hat"], cls.worst["margin"]), file=sys.stderr)


def usb_tsa(schedule, cur_iter, total_iter, num_classes):
    """USB's UDA.TSA."""
    import math
    training_progress = cur_iter / total_iter
    if schedule == "linear":
        threshold = training_progress
    elif schedule == "exp":
        threshold = math.exp((training_progress - 1) * 5)
    elif schedule == "log":
        threshold = 1 - math.exp((-training_progress) * 5)
    else:
        return 1
    return threshold * (1 - 1 / num_classes) + 1 / num_classes


class TsaParity(unittest.TestCase):
    def test_schedules(self):
        for schedule in ("none", "linear", "exp", "log"):
            for c in (1, 2, 10):
                for it in (0, 1, 250, 999, 1000):
                    self.assertAlmostEqual(kdlib.tsa_threshold(schedule, it, 1000, c),
                                           usb_tsa(schedule, it, 1000, c), delta=1e-15)

    def test_supervised_mask_and_loss(self):
        g = torch.Generator().manual_seed(31)
        kept = 0
        for step in range(0, 1001, 100):
            z = (torch.randn(64, 10, generator=g) * (1 + step / 250)).float()
            y = torch.randint(0, 10, (64,), generator=g)
            tsa = usb_tsa("log", step, 1000, 10)
            p = torch.softmax(z.double(), dim=-1)
            want = torch.max(p, dim=-1)[0].le(tsa).double()
            got = kdlib.tsa_mask(z.numpy(), tsa)
            clear = ((torch.max(p, dim=-1)[0] - tsa).abs() > 1e-6).numpy()
            np.testing.assert_array_equal(got.mask[clear], want.numpy()[clear])
            self.assertEqual(got.num_kept, int(got.mask.sum()))
            kept += got.num_kept
            # the paper's variant: the label's probability
            lab = kdlib.tsa_mask(z.numpy(), tsa, labels=y.numpy().astype(np.int32))
            py = p.gather(1, y.view(-1, 1)).view(-1)
            clear = ((py - tsa).abs() > 1e-6).numpy()
            np.testing.assert_array_equal(lab.mask[clear], py.le(tsa).double().numpy()[clear])
            # USB's sup_loss = (ce * sup_mask).mean() is kdlib's weighted CE mean
            loss = kdlib.cross_entropy(z.numpy(), y.numpy().astype(np.int32),
                                       weights=got.mask).loss
            ref = (torch.nn.functional.cross_entropy(z.double(), y, reduction="none")
                   * torch.from_numpy(got.mask).double()).mean()
            self.assertAlmostEqual(float(loss), float(ref), delta=1e-5 * (1 + abs(float(ref))))
        self.assertTrue(0 < kept < 11 * 64)


if __name__ == "__main__":
    unittest.main(verbosity=1)
