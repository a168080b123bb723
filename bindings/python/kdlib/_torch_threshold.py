"""nn.Module classes of the threshold algorithms (kdlib.Thresholds over
include/kdlib/threshold.h), in the style of USB's hooks and tllib's
DynamicThresholdingModule; re-exported by kdlib.torch.

    fm = kdt.FlexMatchThreshold(num_unlabeled, num_classes, threshold=0.95)
    mask, pseudo_labels = fm(y_u_weak, idx_u)          # tllib order: mask, then update
    loss = (F.cross_entropy(y_u_strong, pseudo_labels, reduction="none") * mask).mean()

    sm = kdt.SoftMatchWeighting(num_classes)
    weights, pseudo_labels = sm(y_u_weak)              # USB order: update, then weights

The state lives in libkd; every computation is the C one (the module only
converts: softmax of logits in float32 with torch, rows to float32 CPU, the
results back to torch tensors on the input's device, the mask / weights in
the input's floating dtype, pseudo-labels int64).  state_dict() holds the
crash-safe state file's bytes (get_extra_state), so torch.save /
load_state_dict / checkpoints carry it; save(path) / load(path) write and
read the file itself.  process_group= (e.g. torch.distributed.group.WORLD)
makes every update gather the global batch's rows in rank order
(kdlib.torch_threshold_update), so every rank keeps the state of one process.
"""
import os
import tempfile
from collections import namedtuple

import torch

from ._distributed import torch_threshold_update, torch_threshold_update_labeled
from ._threshold import Thresholds

__all__ = ["ThresholdOutput", "FlexMatchThreshold", "FreeMatchThreshold", "SoftMatchWeighting",
           "AdaMatchThreshold", "DashThreshold", "DebiasPLThreshold"]

_STATE_FORMAT = "kdlib.Thresholds state file"


class ThresholdOutput(namedtuple("ThresholdOutput", ["mask", "pseudo_labels"])):
    """(mask, pseudo_labels) of a batch: the per-sample loss weights (0/1 for
    FlexMatch and FreeMatch, SoftMatch's Gaussian weights in (0, 1]) in the
    input's floating dtype, and the int64 argmax of each row; both of the
    batch shape (the input's shape without its class dimension), no grad."""

    __slots__ = ()

    @property
    def weights(self):
        return self.mask


class _ThresholdModule(torch.nn.Module):
    _algorithm = None
    _update_first = True

    def __init__(self, num_samples, num_classes, inputs="logits", process_group=None,
                 update_first=None, **params):
        super().__init__()
        if inputs not in ("logits", "probabilities"):
            raise ValueError("inputs must be 'logits' or 'probabilities', got %r" % (inputs,))
        self.inputs = inputs
        self.process_group = process_group
        if update_first is not None:
            self._update_first = bool(update_first)
        self.handle = Thresholds(self._algorithm, num_samples, num_classes, **params)
        self.num_samples, self.num_classes = int(num_samples), int(num_classes)

    def extra_repr(self):
        return "num_samples=%d, num_classes=%d, inputs=%r, update_first=%s" % (
            self.num_samples, self.num_classes, self.inputs, self._update_first)

    # -- conversions --
    def _rows(self, x, inputs):
        from .torch import _not_tracing
        _not_tracing()
        inputs = self.inputs if inputs is None else inputs
        if inputs not in ("logits", "probabilities"):
            raise ValueError("inputs must be 'logits' or 'probabilities', got %r" % (inputs,))
        if not isinstance(x, torch.Tensor):
            raise TypeError("the batch must be a torch.Tensor, got %s" % type(x).__name__)
        if not x.is_floating_point():
            raise TypeError("the batch must be a float tensor, got %s" % x.dtype)
        if x.dim() == 0 or x.shape[-1] != self.num_classes:
            raise ValueError("the batch must have %d classes in its last dimension, got shape %s"
                             % (self.num_classes, tuple(x.shape)))
        p = x.detach().to("cpu", torch.float32).reshape(-1, self.num_classes)
        if inputs == "logits":
            p = torch.softmax(p, dim=-1)
        return p.contiguous()

    def _indices(self, indices, n):
        if indices is None:
            return None
        idx = torch.as_tensor(indices).detach().to("cpu", torch.int64).reshape(-1)
        if idx.shape[0] != n:
            raise ValueError("indices has %d entries for a batch of %d rows" % (idx.shape[0], n))
        return idx.contiguous().numpy()

    # -- the algorithm --
    def _update_rows(self, p, indices):
        idx = self._indices(indices, p.shape[0])
        if self.process_group is not None:
            torch_threshold_update(self.handle, p, idx, self.process_group)
        else:
            self.handle.update_probs(p.numpy(), idx)

    def _weights_rows(self, p, x):
        w, pl = self.handle.weights_probs(p.numpy())
        batch = x.shape[:-1]
        mask = torch.from_numpy(w).reshape(batch).to(x.device, x.dtype)
        return ThresholdOutput(mask, torch.from_numpy(pl).to(torch.int64).reshape(batch)
                               .to(x.device))

    def update(self, x, indices=None, *, inputs=None):
        """Record a batch (rows of logits or probabilities; indices: the
        samples' positions in the unlabeled set, required by FlexMatch)."""
        self._update_rows(self._rows(x, inputs), indices)

    def weights(self, x, *, inputs=None):
        """ThresholdOutput of a batch from the current state (no update)."""
        return self._weights_rows(self._rows(x, inputs), x)

    def forward(self, x, indices=None, *, inputs=None):
        """One step: update and weights in the algorithm's reference order
        (update_first: USB's FreeMatch / SoftMatch update, then mask; tllib's
        FlexMatch masks with the thresholds before the update)."""
        p = self._rows(x, inputs)
        if self._update_first:
            self._update_rows(p, indices)
            return self._weights_rows(p, x)
        out = self._weights_rows(p, x)
        self._update_rows(p, indices)
        return out

    def reset(self):
        self.handle.reset()

    def state(self, name):
        """A state array of kdlib.Thresholds.state(name) as a tensor."""
        v = self.handle.state(name)
        return v if isinstance(v, int) else torch.from_numpy(v)

    # -- persistence --
    def save(self, path):
        """libkd's crash-safe state file (temporary file, fsync, rename)."""
        self.handle.save(path)

    def load(self, path):
        """Restore a file of save(): same algorithm, N and C (KdMismatchError otherwise)."""
        self.handle.load(path)

    def get_extra_state(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "state")
            self.handle.save(path)
            with open(path, "rb") as f:
                data = f.read()
        return {"format": _STATE_FORMAT, "algorithm": self._algorithm,
                "num_samples": self.num_samples, "num_classes": self.num_classes, "file": data}

    def set_extra_state(self, state):
        if not isinstance(state, dict) or state.get("format") != _STATE_FORMAT:
            raise ValueError("not the state of a kdlib threshold module")
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "state")
            with open(path, "wb") as f:
                f.write(state["file"])
            self.handle.load(path)     # validates algorithm, N, C and the checksum


class FlexMatchThreshold(_ThresholdModule):
    """FlexMatch curriculum thresholds (tllib DynamicThresholdingModule, USB
    FlexMatchThresholdingHook): forward(x, indices) -> ThresholdOutput.
    threshold (tau), mapping "convex" | "linear" | "concave", warmup (USB and
    the paper: True; tllib: False), non_strict (>= instead of > in the
    update).  The default order is tllib's (mask from the thresholds before
    the batch's update); update_first=True gives USB's."""

    _algorithm = "flexmatch"
    _update_first = False

    def __init__(self, num_samples, num_classes, threshold=0.95, mapping="convex", warmup=False,
                 non_strict=False, *, inputs="logits", process_group=None, update_first=None):
        super().__init__(num_samples, num_classes, inputs, process_group, update_first,
                         threshold=threshold, mapping=mapping, warmup=warmup,
                         non_strict=non_strict)

    def _update_rows(self, p, indices):
        if indices is None:
            raise ValueError("FlexMatchThreshold needs the samples' indices in the unlabeled set")
        super()._update_rows(p, indices)

    @property
    def thresholds(self):
        """tau_c of every class (float32 tensor of C)."""
        return torch.from_numpy(self.handle.thresholds())

    @property
    def learning_effect(self):
        return torch.from_numpy(self.handle.learning_effect())


class FreeMatchThreshold(_ThresholdModule):
    """FreeMatch self-adaptive thresholds (USB FreeMatchThresholingHook):
    forward(x) -> ThresholdOutput, USB's order (update, then mask).
    momentum (USB ema_p 0.999), clip (USB clip_thresh=True: 0.95),
    use_quantile, quantile."""

    _algorithm = "freematch"

    def __init__(self, num_classes, momentum=0.999, clip=1.0, use_quantile=False, quantile=0.8,
                 *, inputs="logits", process_group=None, update_first=None):
        super().__init__(1, num_classes, inputs, process_group, update_first, momentum=momentum,
                         clip=clip, use_quantile=use_quantile, quantile=quantile)

    @property
    def thresholds(self):
        """tau_t MaxNorm(p_t)_c of every class (float32 tensor of C)."""
        return torch.from_numpy(self.handle.thresholds())

    @property
    def global_threshold(self):
        return float(self.handle.state("global_threshold")[0])


class SoftMatchWeighting(_ThresholdModule):
    """SoftMatch truncated-Gaussian weights (USB SoftMatchWeightingHook with
    DistAlignEMAHook, uniform target): forward(x) -> ThresholdOutput whose
    mask (alias .weights) is in (0, 1]; USB's order (update, then weights).
    momentum (0.999), n_sigma (2), per_class (False), dist_align (True)."""

    _algorithm = "softmatch"

    def __init__(self, num_classes, momentum=0.999, n_sigma=2.0, per_class=False,
                 dist_align=True, *, inputs="logits", process_group=None, update_first=None):
        super().__init__(1, num_classes, inputs, process_group, update_first, momentum=momentum,
                         n_sigma=n_sigma, per_class=per_class, dist_align=dist_align)


class AdaMatchThreshold(_ThresholdModule):
    """AdaMatch relative thresholds with distribution alignment to the
    labelled predictions (USB AdaMatchThresholdingHook with
    DistAlignEMAHook(p_target_type='model')): forward(x_ulb, x_lb) ->
    ThresholdOutput, USB's order (both updates, then the mask); the
    pseudo-labels are the argmax of the aligned rows.  x_lb: the labelled
    batch's logits (or probabilities) of the same step, detached here.
    threshold (USB p_cutoff 0.95), momentum (ema_p 0.999), dist_align (True)."""

    _algorithm = "adamatch"

    def __init__(self, num_classes, threshold=0.95, momentum=0.999, dist_align=True, *,
                 inputs="logits", process_group=None):
        super().__init__(1, num_classes, inputs, process_group, True, threshold=threshold,
                         momentum=momentum, dist_align=dist_align)

    def update_labeled(self, x_lb, *, inputs=None):
        """Record the labelled batch (rows of logits or probabilities)."""
        p = self._rows(x_lb, inputs)
        if self.process_group is not None:
            torch_threshold_update_labeled(self.handle, p, self.process_group)
        else:
            self.handle.update_labeled_probs(p.numpy())

    def forward(self, x, x_lb=None, *, inputs=None):
        """One step: the labelled rows (when given), the unlabelled rows, then
        the mask and the aligned pseudo-labels of x."""
        if x_lb is not None:
            self.update_labeled(x_lb, inputs=inputs)
        return super().forward(x, None, inputs=inputs)

    @property
    def global_threshold(self):
        """tau times the last labelled batch's mean max probability."""
        return float(self.handle.state("global_threshold")[0])


class DashThreshold(_ThresholdModule):
    """Dash's dynamic loss threshold (USB DashThresholdingHook):
    forward(x) -> ThresholdOutput, USB's order (the schedule's step, then the
    mask of rows whose loss against their own pseudo-label is <= rho).
    rho_init: USB's rho_init, the mean cross-entropy of the supervised
    warm-up model on the evaluation set (None: log C); gamma (1.27), dash_c
    (USB's C, 1.0001), rho_min (0.05), period (USB: 10 epochs of
    iterations; default 10240), temperature (T, 0.5).  The pseudo-labels of
    the output are the argmax; targets(x) gives USB's loss targets (the
    sharpened softmax(z / T) until rho reaches rho_min, then the argmax)."""

    _algorithm = "dash"

    def __init__(self, num_classes, rho_init=None, gamma=1.27, dash_c=1.0001, rho_min=0.05,
                 period=10240, temperature=0.5, *, inputs="logits", process_group=None):
        params = dict(gamma=gamma, dash_c=dash_c, rho_min=rho_min, period=period,
                      temperature=temperature)
        if rho_init is not None:
            params["rho_init"] = rho_init
        super().__init__(1, num_classes, inputs, process_group, True, **params)

    @property
    def rho(self):
        return float(self.handle.state("rho")[0])

    @property
    def use_hard_label(self):
        return bool(self.handle.state("hard_label"))

    def targets(self, x, *, inputs=None):
        """USB's pseudo-label targets of x in the current phase: int64 argmax
        (hard) or softmax(z / T) in x's dtype (soft), no grad."""
        inputs = self.inputs if inputs is None else inputs
        x = x.detach()
        if self.use_hard_label:
            return x.argmax(dim=-1)
        z = x if inputs == "logits" else torch.log(x)
        return torch.softmax(z / self.handle.temperature, dim=-1)


class DebiasPLThreshold(_ThresholdModule):
    """DebiasPL's debiased pseudo-labels (Wang et al., CVPR 2022, the
    authors' main_DebiasPL.py): forward(x) -> ThresholdOutput from the
    rows adjusted by p_hat, softmax(log q - tau log p_hat), masked where the
    adjusted max >= threshold, then the update of p_hat (the authors' order).
    threshold (0.95), momentum (qhat_m 0.999), debias_tau (0.4).
    margin() / adjust(x_strong) give the adaptive marginal loss's logits
    x_strong + tau log p_hat (with the p_hat after the batch's update, as
    the code)."""

    _algorithm = "debiaspl"

    def __init__(self, num_classes, threshold=0.95, momentum=0.999, debias_tau=0.4, *,
                 inputs="logits", process_group=None, update_first=False):
        super().__init__(1, num_classes, inputs, process_group, update_first,
                         threshold=threshold, momentum=momentum, debias_tau=debias_tau)

    @property
    def p_hat(self):
        """The EMA of the mean prediction (float32 tensor of C)."""
        return torch.from_numpy(self.handle.state("class_probs"))

    def margin(self):
        """tau log p_hat (float32 tensor of C; p_hat floored at 1e-12 as in
        the adjustment)."""
        return self.handle.debias_tau * torch.log(self.p_hat.clamp_min(1e-12))

    def adjust(self, logits_strong):
        """The strong view's logits with the adaptive margin, for the
        cross-entropy against the pseudo-labels (keeps logits_strong's grad)."""
        m = self.margin().to(logits_strong.device, logits_strong.dtype)
        return logits_strong + m
