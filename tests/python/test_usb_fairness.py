#!/usr/bin/env python3
"""kdlib's FreeMatch fairness loss (KD_LOSS_FAIRNESS, through kdlib.torch.fairness)
against a PyTorch float64 re-statement of USB's entropy_loss
(semilearn/algorithms/freematch/freematch.py), loss and autograd gradient,
over random batches whose mask, p_model and label_hist come from kdlib's
FreeMatch thresholds fed with weak-view probabilities (USB's pipeline: the
MaskingHook updates, then masks; the entropy loss reads the hook's state).
The logits are float32 (what kdlib receives); the reference promotes them to
float64.  Prints the largest absolute and relative differences.

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
import kdlib.torch as KT  # noqa: E402


def replace_inf_to_zero(val):
    val[val == float("inf")] = 0.0
    return val


def usb_entropy_loss(mask, logits_s, prob_model, label_hist):
    """USB's entropy_loss, restated in float64 (the loss; the histogram mean
    it also returns is not used by train_step)."""
    mask = mask.bool()
    logits_s = logits_s[mask]
    prob_s = logits_s.softmax(dim=-1)
    _, pred_label_s = torch.max(prob_s, dim=-1)
    hist_s = torch.bincount(pred_label_s, minlength=logits_s.shape[1]).to(logits_s.dtype)
    hist_s = hist_s / hist_s.sum()
    prob_model = prob_model.reshape(1, -1)
    label_hist = label_hist.reshape(1, -1)
    prob_model_scaler = replace_inf_to_zero(1 / label_hist).detach()
    mod_prob_model = prob_model * prob_model_scaler
    mod_prob_model = mod_prob_model / mod_prob_model.sum(dim=-1, keepdim=True)
    mean_prob_scaler_s = replace_inf_to_zero(1 / hist_s).detach()
    mod_mean_prob_s = prob_s.mean(dim=0, keepdim=True) * mean_prob_scaler_s
    mod_mean_prob_s = mod_mean_prob_s / mod_mean_prob_s.sum(dim=-1, keepdim=True)
    loss = mod_prob_model * torch.log(mod_mean_prob_s + 1e-12)
    return loss.sum(dim=1).mean()


def usb_train_step_term(mask, logits_s, p_model, label_hist):
    """What USB's train_step adds before lambda_e: entropy_loss if mask.sum() > 0, else 0."""
    if mask.sum() > 0:
        return usb_entropy_loss(mask, logits_s, p_model, label_hist)
    return torch.zeros((), dtype=logits_s.dtype) + 0.0 * logits_s.sum()


STATS = {"abs_loss": 0.0, "rel_loss": 0.0, "abs_grad": 0.0, "rel_grad": 0.0}


def compare(case, logits32, mask, pm, lh, loss_rtol=2e-6, grad_rtol=2e-5):
    """kdlib (float32 in) against USB (float64) on the same float32 logits."""
    x = torch.tensor(logits32, requires_grad=True)
    loss = KT.fairness(x, torch.tensor(pm), torch.tensor(lh), torch.tensor(mask))
    loss.backward()
    xr = torch.tensor(logits32.astype(np.float64), requires_grad=True)
    ref = usb_train_step_term(torch.tensor(mask, dtype=torch.float64), xr,
                              torch.tensor(pm, dtype=torch.float64),
                              torch.tensor(lh, dtype=torch.float64))
    ref.backward()
    got, want = float(loss), float(ref)
    g, gr = x.grad.numpy().astype(np.float64), xr.grad.numpy()
    da, dg = abs(got - want), float(np.max(np.abs(g - gr))) if g.size else 0.0
    gmax = float(np.max(np.abs(gr))) if gr.size else 0.0
    STATS["abs_loss"] = max(STATS["abs_loss"], da)
    STATS["rel_loss"] = max(STATS["rel_loss"], da / abs(want) if want else 0.0)
    STATS["abs_grad"] = max(STATS["abs_grad"], dg)
    STATS["rel_grad"] = max(STATS["rel_grad"], dg / gmax if gmax else 0.0)
    case.assertTrue(np.sign(got) == np.sign(want) or want == 0.0, (got, want))
    case.assertLessEqual(da, loss_rtol * abs(want) + 1e-7, (got, want))
    case.assertLessEqual(dg, grad_rtol * gmax + 1e-9, (dg, gmax))
    return got, want


def freematch_state(th, weak32):
    """USB's order: the hook updates with the weak probabilities, then masks."""
    probs = torch.softmax(torch.tensor(weak32, dtype=torch.float64), -1).numpy().astype(np.float32)
    th.update_probs(probs)
    mask, _ = th.weights_probs(probs)
    return (mask.astype(np.float32), th.state("class_probs").astype(np.float32),
            th.state("label_histogram").astype(np.float32))


class FairnessParity(unittest.TestCase):
    def test_random_batches_through_freematch(self):
        rng = np.random.default_rng(7)
        for c in (2, 3, 10, 37):
            th = kdlib.Thresholds("freematch", 1000, c, momentum=0.9)
            for step in range(12):
                n = int(rng.integers(8, 96))
                weak = (rng.standard_normal((n, c)) * 3.0).astype(np.float32)
                strong = (weak + rng.standard_normal((n, c)) * 1.5).astype(np.float32)
                mask, pm, lh = freematch_state(th, weak)
                if mask.sum() == 0:
                    mask[0] = 1.0
                got, want = compare(self, strong, mask, pm, lh)
                self.assertLessEqual(want, 0.0)

    def test_label_hist_zeros_and_unseen_classes(self):
        rng = np.random.default_rng(8)
        c = 8
        pm = rng.uniform(0.05, 1.0, c).astype(np.float32)
        pm /= pm.sum()
        lh = rng.uniform(0.05, 0.3, c).astype(np.float32)
        lh[[1, 5]] = 0.0  # USB: 1/0 = inf -> 0
        for n in (1, 2, 5, 40):
            x = (rng.standard_normal((n, c)) * 4.0).astype(np.float32)
            mask = (rng.uniform(size=n) < 0.7).astype(np.float32)
            mask[0] = 1.0
            compare(self, x, mask, pm, lh)

    def test_large_logits(self):
        rng = np.random.default_rng(9)
        c = 6
        pm = np.full(c, 1.0 / c, np.float32)
        lh = rng.uniform(0.1, 0.3, c).astype(np.float32)
        x = (rng.standard_normal((30, c)) * 40.0).astype(np.float32)
        mask = np.ones(30, np.float32)
        compare(self, x, mask, pm, lh, loss_rtol=1e-5, grad_rtol=1e-4)

    def test_no_selected_row_is_zero(self):
        x = torch.randn(7, 4, requires_grad=True)
        mask = torch.zeros(7)
        pm = torch.full((4,), 0.25)
        loss = KT.fairness(x, pm, pm, mask)
        loss.backward()
        self.assertEqual(float(loss), 0.0)
        self.assertTrue(torch.all(x.grad == 0))

    def test_split_statistics_give_the_whole_batch(self):
        # two "ranks" with the low-level handle: local_stats, SUM, finish
        rng = np.random.default_rng(11)
        n, c = 50, 7
        x = (rng.standard_normal((n, c)) * 3).astype(np.float32)
        mask = (rng.uniform(size=n) < 0.6).astype(np.float32)
        pm = rng.uniform(0.1, 1.0, c).astype(np.float32)
        lh = rng.uniform(0.05, 0.3, c).astype(np.float32)
        whole = kdlib.fairness(x, pm, lh, mask)
        cut, handles, stats = 23, [], []
        for rows in (slice(0, cut), slice(cut, n)):
            h = kdlib.Loss(kdlib.losses_constants.FAIRNESS, c)
            h.bind_matrix(kdlib.losses_constants.ARG_STUDENT, np.ascontiguousarray(x[rows]))
            h.bind_weights(np.ascontiguousarray(mask[rows]))
            h.bind_vector(kdlib.losses_constants.ARG_CLASS_PROBS, pm)
            h.bind_vector(kdlib.losses_constants.ARG_LABEL_HISTOGRAM, lh)
            handles.append((h, rows.stop - rows.start))
            stats.append(h.local_stats(rows.stop - rows.start))
        total = stats[0] + stats[1]
        self.assertEqual(total.shape, (2 * c + 1,))
        for h, m in handles:
            self.assertAlmostEqual(h.finish(m, total), whole.loss, delta=2e-6 * abs(whole.loss))
            h.close()

    def test_module_and_functional_agree(self):
        rng = np.random.default_rng(10)
        x = torch.tensor((rng.standard_normal((20, 5)) * 2).astype(np.float32))
        pm = torch.tensor(np.full(5, 0.2, np.float32))
        lh = torch.tensor(np.array([0.1, 0.2, 0.3, 0.2, 0.2], np.float32))
        mask = torch.tensor((rng.uniform(size=20) < 0.5).astype(np.float32))
        a = KT.FairnessLoss()(x, pm, lh, mask)
        b = KT.fairness(x, pm, lh, mask)
        r = kdlib.fairness(x.numpy(), pm.numpy(), lh.numpy(), mask.numpy())
        self.assertEqual(float(a), float(b))
        self.assertEqual(float(a), r.loss)


if __name__ == "__main__":
    prog = unittest.main(exit=False, verbosity=1)
    print("kdlib fairness vs USB entropy_loss (float64): max |loss diff| %.3g (rel %.3g), "
          "max |grad diff| %.3g (rel to max |grad| %.3g)"
          % (STATS["abs_loss"], STATS["rel_loss"], STATS["abs_grad"], STATS["rel_grad"]))
    sys.exit(0 if prog.result.wasSuccessful() else 1)
