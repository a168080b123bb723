"""PyTorch autograd wrappers over kdlib's losses (CPU float32 tensors).

    import kdlib.torch as kdt
    loss = kdt.kl_distill(student_logits, teacher_logits, labels, temperature=4, alpha=0.9)
    loss.backward()

Each function runs libkd's fused forward+backward in the forward pass (when
some input requires a gradient), keeps the gradient, and in the backward pass
multiplies it by the incoming gradient (a scalar for mean/sum, one value per
row for reduction="none": every per-sample loss depends on its own row only).
Inputs whose gradient the loss does not define (the teacher of a
distillation or pseudo-label loss, the weak view, labels, the main heads of
worst-case estimation) get none.  Double backward is not supported.

Tensors must be on the CPU; float inputs must be float32 (TypeError
otherwise).  They are passed to libkd without a copy when their rows are
contiguous (stride(1) == 1); other layouts are copied with .contiguous().
Integer tensors (labels) are converted to int32.
"""
import numpy as np
import torch

from . import _losses as L

__all__ = ["cross_entropy", "soft_cross_entropy", "kl_distill", "logit_mse", "pseudo_label",
           "strong_weak_consistency", "consistency", "class_balance", "mcc",
           "worst_case_estimation", "linear_kl_distill"]


def _np(t, name):
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        raise TypeError("%s must be a torch.Tensor, got %s" % (name, type(t).__name__))
    if t.device.type != "cpu":
        raise ValueError("%s must be a CPU tensor, got device %s" % (name, t.device))
    t = t.detach()
    if t.is_floating_point():
        if t.dtype != torch.float32:
            raise TypeError("%s must be float32, got %s" % (name, t.dtype))
        if t.dim() == 2 and t.shape[1] > 1 and t.stride(1) != 1:
            t = t.contiguous()
        elif t.dim() == 2 and t.shape[0] > 1 and t.stride(0) < t.shape[1]:
            t = t.contiguous()
    return t.numpy()


class _KdFunction(torch.autograd.Function):
    """forward(ctx, spec, *tensors).  spec = (call, names, grad_fields, extra_fields):
    call(arrays, compute_grad) -> LossResult; grad_fields maps an input
    position to the result field holding its gradient; extra_fields are
    returned after the loss as non-differentiable tensors."""

    @staticmethod
    def forward(ctx, spec, *tensors):
        call, names, grad_fields, extra_fields = spec
        arrays = [_np(t, n) for t, n in zip(tensors, names)]
        need = ctx.needs_input_grad[1:]
        wanted = {pos: field for pos, field in grad_fields.items() if need[pos]}
        r = call(arrays, bool(wanted))
        ctx.grads = {pos: torch.from_numpy(getattr(r, field)) for pos, field in wanted.items()}
        ctx.count = len(tensors)
        if isinstance(r.loss, np.ndarray):
            loss = torch.from_numpy(r.loss)
        else:
            loss = torch.tensor(r.loss, dtype=torch.float32)
        extras = [torch.from_numpy(getattr(r, f)) for f in extra_fields]
        if extras:
            ctx.mark_non_differentiable(*extras)
            return (loss,) + tuple(extras)
        return loss

    @staticmethod
    def backward(ctx, grad_output, *unused):
        out = [None] * (ctx.count + 1)
        for pos, g in ctx.grads.items():
            go = grad_output.to(g.dtype)
            out[pos + 1] = g * (go.reshape(-1, 1) if go.dim() == 1 else go)
        return tuple(out)


def _apply(call, inputs, grad_fields, extra_fields=()):
    names = [n for n, _ in inputs]
    tensors = [t for _, t in inputs]
    return _KdFunction.apply((call, names, grad_fields, tuple(extra_fields)), *tensors)


def _split_teacher(teacher):
    if isinstance(teacher, (list, tuple)):
        return [("teacher[%d]" % k, t) for k, t in enumerate(teacher)], True
    return [("teacher", teacher)], False


def cross_entropy(student, labels, label_smoothing=0.0, ignore_index=-100, reduction="mean", **kw):
    """kdlib.cross_entropy as an autograd function of student."""
    def call(a, grad):
        return L.cross_entropy(a[0], a[1], label_smoothing, ignore_index, reduction,
                               compute_grad=grad, **kw)
    return _apply(call, [("student", student), ("labels", labels)], {0: "grad_student"})


def soft_cross_entropy(student, target_probs=None, reduction="mean", *, teacher=None,
                       labels=None, **kw):
    """kdlib.soft_cross_entropy as an autograd function of student (the
    target or teacher gets no gradient)."""
    inputs = [("student", student), ("labels", labels)]
    if target_probs is not None:
        inputs.append(("target_probs", target_probs))
        multi = None
    else:
        tin, multi = _split_teacher(teacher)
        inputs += tin

    def call(a, grad):
        if multi is None:
            return L.soft_cross_entropy(a[0], a[2], reduction, labels=a[1], compute_grad=grad, **kw)
        t = a[2:] if multi else a[2]
        return L.soft_cross_entropy(a[0], None, reduction, teacher=t, labels=a[1],
                                    compute_grad=grad, **kw)
    return _apply(call, inputs, {0: "grad_student"})


def kl_distill(student, teacher, labels=None, temperature=1.0, alpha=1.0, reduction="batchmean", **kw):
    """kdlib.kl_distill as an autograd function of student; teacher may be a
    list of tensors (averaged, teacher_weights=)."""
    tin, multi = _split_teacher(teacher)

    def call(a, grad):
        return L.kl_distill(a[0], a[2:] if multi else a[2], a[1], temperature, alpha, reduction,
                            compute_grad=grad, **kw)
    return _apply(call, [("student", student), ("labels", labels)] + tin, {0: "grad_student"})


def logit_mse(student, teacher, reduction="mean", *, labels=None, **kw):
    """kdlib.logit_mse as an autograd function of student."""
    tin, multi = _split_teacher(teacher)

    def call(a, grad):
        return L.logit_mse(a[0], a[2:] if multi else a[2], reduction, labels=a[1],
                           compute_grad=grad, **kw)
    return _apply(call, [("student", student), ("labels", labels)] + tin, {0: "grad_student"})


def pseudo_label(student, teacher, threshold=0.95, class_thresholds=None, *, return_mask=False, **kw):
    """kdlib.pseudo_label as an autograd function of student.  With
    return_mask=True returns (loss, mask, pseudo_labels)."""
    if isinstance(class_thresholds, torch.Tensor):
        class_thresholds = _np(class_thresholds, "class_thresholds")

    def call(a, grad):
        return L.pseudo_label(a[0], a[1], threshold, class_thresholds, compute_grad=grad, **kw)
    return _apply(call, [("student", student), ("teacher", teacher)], {0: "grad_student"},
                  ("mask", "pseudo_labels") if return_mask else ())


def strong_weak_consistency(strong, weak, threshold=0.7, temperature=0.85, *, return_mask=False, **kw):
    """kdlib.strong_weak_consistency as an autograd function of strong (the
    weak view gets no gradient)."""
    def call(a, grad):
        return L.strong_weak_consistency(a[0], a[1], threshold, temperature, compute_grad=grad, **kw)
    return _apply(call, [("strong", strong), ("weak", weak)], {0: "grad_student"},
                  ("mask", "pseudo_labels") if return_mask else ())


def consistency(p1, p2, distance="l2", inputs="logits", mask=None, reduction="mean", **kw):
    """kdlib.consistency as an autograd function of both p1 and p2."""
    def call(a, grad):
        return L.consistency(a[0], a[1], distance, inputs, a[2], reduction, compute_grad=grad, **kw)
    return _apply(call, [("p1", p1), ("p2", p2), ("mask", mask)],
                  {0: "grad_student", 1: "grad_teacher"})


def class_balance(logits, inputs="logits", **kw):
    """kdlib.class_balance as an autograd function of logits."""
    def call(a, grad):
        return L.class_balance(a[0], inputs, compute_grad=grad, **kw)
    return _apply(call, [("logits", logits)], {0: "grad_student"})


def mcc(logits, temperature=2.5, **kw):
    """kdlib.mcc as an autograd function of logits."""
    def call(a, grad):
        return L.mcc(a[0], temperature, compute_grad=grad, **kw)
    return _apply(call, [("logits", logits)], {0: "grad_student"})


def worst_case_estimation(y_l, y_l_adv, y_u, y_u_adv, eta_prime=2.0, reduction="mean", **kw):
    """kdlib.worst_case_estimation as an autograd function of y_l_adv and
    y_u_adv (the main heads y_l, y_u get no gradient)."""
    def call(a, grad):
        return L.worst_case_estimation(a[0], a[1], a[2], a[3], eta_prime, reduction,
                                       compute_grad=grad, **kw)
    return _apply(call, [("y_l", y_l), ("y_l_adv", y_l_adv), ("y_u", y_u), ("y_u_adv", y_u_adv)],
                  {1: "grad_y_l_adv", 3: "grad_y_u_adv"})


def linear_kl_distill(hidden, weight, bias=None, teacher=None, labels=None, temperature=1.0,
                      alpha=1.0, reduction="batchmean", **kw):
    """kdlib.linear_kl_distill as an autograd function of hidden, weight and
    bias (student logits = hidden @ weight.T + bias, never materialised);
    teacher: n x C logits (no gradient)."""
    from ._linear import linear_kl_distill as _f

    def call(a, grad):
        return _f(a[0], a[1], a[2], a[3], a[4], temperature, alpha, reduction,
                  compute_grad=grad, **kw)
    return _apply(call, [("hidden", hidden), ("weight", weight), ("bias", bias),
                         ("teacher", teacher), ("labels", labels)],
                  {0: "grad_hidden", 1: "grad_weight", 2: "grad_bias"})
