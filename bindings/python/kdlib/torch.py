"""PyTorch autograd functions over kdlib's losses (CPU tensors).

    import kdlib.torch as kdt
    loss = kdt.kl_distill(student_logits, teacher_logits, labels, temperature=4, alpha=0.9)
    loss.backward()

    loss, mask, pseudo_labels = kdt.pseudo_label(student_logits, teacher_logits, 0.95)

    mask, pseudo_labels = kdt.FreeMatchThreshold(num_classes)(weak_logits)   # threshold modules

    loss, grad = kdt.kl_distill_forward_backward(logits, teacher, labels, 4.0, 0.9)
    logits.backward(grad)        # the no-autograd fast path (small batches; kdlib/_fast.py)

How a call runs.  When autograd will need a gradient (grad mode is on and a
differentiable input requires one) the forward pass runs libkd's fused
forward+backward, keeps the gradient, and the backward pass scales it in
place by the incoming gradient (a scalar for mean/sum; one value per row for
reduction="none", every per-sample loss depending on its own row only) and
hands it to autograd without another copy.  Otherwise (torch.no_grad(),
inference_mode, or no input requiring a gradient) only the forward runs: no
gradient work at all.  The libkd handle of each configuration (kind, C and
every option) is cached per thread, so a repeated call makes no
kd_loss_create and no parameter calls.

Gradients.  Only the differentiable inputs get one: the student (each loss),
both inputs of consistency, the worst-case heads y_l_adv / y_u_adv, and
hidden / weight / bias of linear_kl_distill.  The functions are
once-differentiable: a double backward (create_graph=True, then a backward
through the gradient, e.g. an input-gradient penalty) raises RuntimeError
("kdlib.torch losses are once-differentiable") instead of returning a wrong second
derivative.  Inputs without a gradient come in two groups:
  - detached by definition (as in tllib, which calls .detach() on them):
    the teacher of pseudo_label, the weak view of strong_weak_consistency,
    the main heads y_l / y_u of worst_case_estimation, class_thresholds,
    and fairness's mask, class_probs and label_hist (USB takes mask.bool()
    and detaches the scalers).  They may require a gradient; it is ignored,
    as in tllib and USB.
  - inputs PyTorch's own expression would differentiate: the teacher /
    target of kl_distill, soft_cross_entropy, logit_mse and
    linear_kl_distill (and teacher_hidden / teacher_weight / teacher_bias),
    per-sample weights, consistency's mask, teacher_weights, and tensor-valued
    options (temperature, alpha, threshold, ...).  If one requires a gradient
    while grad mode is on, the call raises ValueError (pass .detach(), or
    compute the teacher under torch.no_grad()) instead of silently giving it
    none.

TorchScript.  torch.jit.trace through a kdlib.torch loss or threshold module
raises RuntimeError (the trace would silently hold the example's result as a
constant); trace or script the model alone and call kdlib.torch on its
outputs.  torch.jit.script cannot compile these Python functions.

Types and shapes.  Tensors must be on the CPU.  Every tensor argument may be
a tensor (weights, masks, teacher_weights, class_thresholds, teacher_hidden,
teacher_weight too; NumPy arrays and lists still work for the small
vectors).  Float inputs may be float32 (passed without a copy when rows are
contiguous), float64, float16 or bfloat16 (copied to float32, computed in
float32; the loss comes back in the student's dtype and each gradient in its
input's dtype).  Logits of shape (..., C) are flattened to rows and the
results reshaped: a (B, T, V) student with (B, T) labels gives a (B, T)
per-sample loss for reduction="none", (B, T) masks and pseudo-labels, and a
(B, T, V) gradient.  int64 and int32 labels are read in place by libkd (no
copy; a value outside [0, C), also beyond int32, raises KdInvalidArgumentError),
other integer dtypes are range-checked and converted to int32; pseudo-labels
come back as int64 (torch's label
dtype: F.cross_entropy(s, pl) and eye[pl] work).
"""
from collections import namedtuple

import numpy as np
import torch

from . import _fast as FP
from . import _losses as L

__all__ = ["cross_entropy", "soft_cross_entropy", "kl_distill", "logit_mse", "pseudo_label",
           "strong_weak_consistency", "consistency", "class_balance", "mcc",
           "worst_case_estimation", "entropy", "fairness", "linear_kl_distill",
           "PseudoLabelOutput"]

PseudoLabelOutput = namedtuple("PseudoLabelOutput", ["loss", "mask", "pseudo_labels"])
PseudoLabelOutput.__doc__ = """(loss, mask, pseudo_labels): the loss (a tensor with autograd),
the float32 0/1 selection mask and the int64 pseudo-labels (argmax of the
teacher), both of the batch shape and without gradient."""

_FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

# how an input is used: its gradient field, or None and one of these policies
GRAD, DETACH, REFUSE = "grad", "detach", "refuse"


def _refuse(name):
    raise ValueError("%s requires grad, but kdlib computes no gradient for it (PyTorch's "
                     "expression would): pass %s.detach() (or compute it under torch.no_grad()) "
                     "to say that no gradient is wanted" % (name, name))


def _scalar(x, name):
    """A float option given as a number or a one-element tensor."""
    if isinstance(x, torch.Tensor):
        if x.requires_grad and torch.is_grad_enabled():
            _refuse(name)
        if x.numel() != 1:
            raise ValueError("%s must be a number or a one-element tensor, got shape %s"
                             % (name, tuple(x.shape)))
        return float(x.detach())
    return x


def _array(t, name, rows):
    """A NumPy view of tensor t for libkd: rows=True gives a 2-D float32
    matrix of rows (leading dimensions flattened), rows=False a 1-D vector.
    Non-tensors (NumPy arrays, lists) pass through for the small vectors."""
    if t is None:
        return None
    if not isinstance(t, torch.Tensor):
        if rows:
            raise TypeError("%s must be a torch.Tensor, got %s" % (name, type(t).__name__))
        return t
    if t.device.type != "cpu":
        raise ValueError("%s must be a CPU tensor, got device %s" % (name, t.device))
    if t.dtype is torch.float32 and t.is_contiguous() and t.dim() == (2 if rows else 1):
        return t.detach().numpy()          # the common case: no copy, no other check
    t = t.detach()
    if t.is_floating_point():
        if t.dtype != torch.float32:
            if t.dtype not in _FLOATS:
                raise TypeError("%s must be float32, float64, float16 or bfloat16, got %s"
                                % (name, t.dtype))
            t = t.to(torch.float32)
    elif t.is_complex():
        raise TypeError("%s must be a real tensor, got %s" % (name, t.dtype))
    # integer tensors (labels) go to NumPy as they are: int64 / int32 are bound in
    # place (Loss.bind_labels: kd_loss_bind_labels64 / _labels), others are
    # range-checked and converted to int32 by _arrays.int_vector
    if rows:
        if t.dim() == 0:
            raise ValueError("%s must have a class dimension, got a 0-d tensor" % name)
        if t.dim() != 2:
            t = t.reshape(-1, t.shape[-1])
        n, c = t.shape
        if (c > 1 and t.stride(1) != 1) or (n > 1 and t.stride(0) < c):
            t = t.contiguous()
    else:
        if t.dim() != 1:
            t = t.reshape(-1)
        if t.numel() > 1 and t.stride(0) != 1:
            t = t.contiguous()
    return t.numpy()


class _Plan:
    """One call: the converted arrays, libkd's call, the differentiable
    tensors, and what forward found (result, gradients)."""

    __slots__ = ("call", "arrays", "diff", "result", "grads")

    def __init__(self, call, arrays, diff):
        self.call, self.arrays, self.diff = call, arrays, diff
        self.result = None
        self.grads = None

    def run(self, compute_grad):
        r = self.call(self.arrays, compute_grad)
        if compute_grad:
            self.grads = [torch.from_numpy(getattr(r, field)) for _, field in self.diff]
        self.result = r
        return r


def _loss_tensor(value, like, batch):
    if isinstance(value, np.ndarray):
        out = torch.from_numpy(value).reshape(batch)
        return out if like == torch.float32 else out.to(like)
    return torch.tensor(value, dtype=like)


class _SecondOrder(torch.autograd.Function):
    """Carries a first-order gradient returned under create_graph=True: a
    backward through it (a double backward) raises."""

    @staticmethod
    def forward(ctx, g):
        return g.view_as(g)

    @staticmethod
    def backward(ctx, gg):
        raise RuntimeError("kdlib.torch losses are once-differentiable (libkd computes the "
                           "first derivative only): a double backward, e.g. a penalty on an "
                           "input gradient taken with create_graph=True, is not supported")


class _KdFunction(torch.autograd.Function):
    """forward(ctx, plan, like, batch, *differentiable tensors) -> loss.

    Once-differentiable: under create_graph=True each returned gradient goes
    through _SecondOrder, so a backward through it raises.  (PyTorch's own
    @once_differentiable only does that when the incoming gradient requires
    grad, which it does not in the input-gradient-penalty case: the second
    derivative would silently be taken as zero.)"""

    @staticmethod
    def forward(ctx, plan, like, batch, *tensors):
        r = plan.run(True)
        ctx.plan = plan
        return _loss_tensor(r.loss, like, batch)

    @staticmethod
    def backward(ctx, grad_output):
        with torch.no_grad():
            out = _KdFunction._first_order(ctx, grad_output)
        if torch.is_grad_enabled():          # create_graph=True
            out = tuple(None if g is None else _SecondOrder.apply(g.detach().requires_grad_(True))
                        for g in out)
        return out

    @staticmethod
    def _first_order(ctx, grad_output):
        plan = ctx.plan
        grads, plan.grads = plan.grads, None
        if grads is None:            # a second backward (retain_graph=True): recompute
            plan.run(True)
            grads, plan.grads = plan.grads, None
        scalar = grad_output.dim() == 0
        if scalar:
            v = float(grad_output)
        out = [None, None, None]
        for k, ((t, field), g) in enumerate(zip(plan.diff, grads)):
            if not ctx.needs_input_grad[3 + k]:
                out.append(None)
                continue
            if scalar:
                if v != 1.0:
                    g.mul_(v)        # in place: the buffer is this call's own
            elif g.dim() == 2 and g.shape[0] == grad_output.numel() and field != "grad_weight":
                g.mul_(grad_output.reshape(-1, 1).to(torch.float32))
            else:
                u = grad_output.reshape(-1)
                if u.numel() and not bool((u == u[0]).all()):
                    raise RuntimeError("reduction='none' with different upstream values per "
                                       "row cannot give %s (a sum over rows): use equal "
                                       "upstream values or reduction='sum'" % field)
                if u.numel():
                    g.mul_(float(u[0]))
            g = g.view(t.shape)
            out.append(g if t.dtype == torch.float32 else g.to(t.dtype))
        return tuple(out)


class _FastFunction(torch.autograd.Function):
    """forward(ctx, run, student) -> loss, where run() is a call of the fast
    path (kdlib.torch.*_forward_backward: the same C call as _KdFunction's,
    with less Python around it) returning (loss, d loss / d student).  Used
    by the autograd functions when their call is one the fast path takes
    (_fast_call); once-differentiable as _KdFunction."""

    @staticmethod
    def forward(ctx, run, student):
        loss, grad = run()
        ctx.run, ctx.grad = run, grad
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        g, ctx.grad = ctx.grad, None
        if g is None:                # a second backward (retain_graph=True): recompute
            g = ctx.run()[1]
        v = float(grad_output)
        if v != 1.0:
            g.mul_(v)                # in place: the buffer is this call's own
        if torch.is_grad_enabled():  # create_graph=True
            g = _SecondOrder.apply(g.detach().requires_grad_(True))
        return None, g


def _plain(x):
    """A 2-D contiguous float32 CPU tensor (the fast path binds it as it is)."""
    return (type(x) is torch.Tensor and x.dtype is torch.float32 and x.dim() == 2
            and x.device.type == "cpu" and x.is_contiguous())


def _plain_labels(y, n):
    return y is None or (type(y) is torch.Tensor and (y.dtype is torch.int64
                                                      or y.dtype is torch.int32)
                         and y.dim() == 1 and y.shape[0] == n and y.device.type == "cpu")


def _fast_call(student, run, *others):
    """The loss through _FastFunction when gradients are wanted for a plain
    student and every other tensor is plain and needs none; else None (the
    general path: conversions, checks, other dtypes and shapes, errors)."""
    if not (torch.is_grad_enabled() and _plain(student) and student.requires_grad):
        return None
    for o in others:
        if not _plain(o) or o.shape != student.shape:
            return None
    return _FastFunction.apply(run, student)


TRACING_MESSAGE = (
    "kdlib.torch cannot be traced by torch.jit.trace: it runs libkd through ctypes on "
    "NumPy views, which a trace cannot record (the graph would hold the example inputs' "
    "result as a constant, or an unsavable Python call over them) and TorchScript cannot "
    "save. Trace or script the model without the kdlib loss and call kdlib.torch on the "
    "traced model's outputs (bindings/python/README.md, TorchScript)")


_tracing_state = getattr(torch._C, "_get_tracing_state", None)   # 10x faster than is_tracing


def _not_tracing():
    """torch.jit.trace would silently record a constant: raise instead."""
    if (_tracing_state() is not None) if _tracing_state else torch.jit.is_tracing():
        raise RuntimeError(TRACING_MESSAGE)


def _apply(call, inputs, main=0):
    """inputs: (name, value, rows, policy_or_grad_field).  call(arrays,
    compute_grad) -> LossResult.  Returns (loss tensor, LossResult)."""
    _not_tracing()
    grad_on = torch.is_grad_enabled()
    arrays, diff = [], []
    for name, v, rows, use in inputs:
        if grad_on and isinstance(v, torch.Tensor) and v.requires_grad:
            if use == REFUSE:
                _refuse(name)
            if use not in (DETACH, REFUSE):
                diff.append((v, use))
        arrays.append(_array(v, name, rows))
    m = inputs[main][1]
    like = m.dtype if m.is_floating_point() else torch.float32
    batch = m.shape[:-1]
    plan = _Plan(call, arrays, diff)
    if not diff:
        r = plan.run(False)
        return _loss_tensor(r.loss, like, batch), r
    loss = _KdFunction.apply(plan, like, batch, *[t for t, _ in diff])
    return loss, plan.result


def _labels_out(r, batch):
    mask = torch.from_numpy(r.mask).reshape(batch)
    return mask, torch.from_numpy(r.pseudo_labels).to(torch.int64).reshape(batch)


def _teachers(teacher, use, name="teacher"):
    if isinstance(teacher, (list, tuple)):
        return [("%s[%d]" % (name, k), t, True, use) for k, t in enumerate(teacher)], True
    return [(name, teacher, True, use)], False


def cross_entropy(student, labels, label_smoothing=0.0, ignore_index=-100, reduction="mean", *,
                  weights=None, **kw):
    """kdlib.cross_entropy as an autograd function of student
    (F.cross_entropy(student, labels, ...) for (..., C) logits)."""
    label_smoothing = _scalar(label_smoothing, "label_smoothing")
    if (ignore_index == -100 and weights is None and not kw and reduction in ("mean", "sum")
            and _plain_labels(labels, getattr(student, "shape", (0,))[0])):
        loss = _fast_call(student, lambda: FP.cross_entropy_forward_backward(
            student, labels, label_smoothing, reduction))
        if loss is not None:
            return loss

    def call(a, grad):
        return L.cross_entropy(a[0], a[1], label_smoothing, ignore_index, reduction, weights=a[2],
                               compute_grad=grad, **kw)
    return _apply(call, [("student", student, True, "grad_student"),
                         ("labels", labels, False, DETACH),
                         ("weights", weights, False, REFUSE)])[0]


def soft_cross_entropy(student, target_probs=None, reduction="mean", *, teacher=None,
                       labels=None, weights=None, teacher_weights=None, temperature=1.0, **kw):
    """kdlib.soft_cross_entropy as an autograd function of student (the
    target or teacher gets no gradient: ValueError if it requires one)."""
    temperature = _scalar(temperature, "temperature")
    for k in ("label_weight", "label_smoothing"):
        if k in kw:
            kw[k] = _scalar(kw[k], k)
    inputs = [("student", student, True, "grad_student"), ("labels", labels, False, DETACH),
              ("weights", weights, False, REFUSE),
              ("teacher_weights", teacher_weights, False, REFUSE)]
    if target_probs is not None:
        inputs.append(("target_probs", target_probs, True, REFUSE))
        multi = None
    else:
        if teacher is None:
            raise ValueError("give exactly one of target_probs and teacher")
        tin, multi = _teachers(teacher, REFUSE)
        inputs += tin

    def call(a, grad):
        if multi is None:
            return L.soft_cross_entropy(a[0], a[4], reduction, labels=a[1], weights=a[2],
                                        compute_grad=grad, **kw)
        return L.soft_cross_entropy(a[0], None, reduction, teacher=a[4:] if multi else a[4],
                                    labels=a[1], weights=a[2], teacher_weights=a[3],
                                    temperature=temperature, compute_grad=grad, **kw)
    return _apply(call, inputs)[0]


def kl_distill(student, teacher, labels=None, temperature=1.0, alpha=1.0, reduction="batchmean", *,
               weights=None, teacher_weights=None, **kw):
    """kdlib.kl_distill as an autograd function of student; teacher may be a
    list of tensors (averaged, teacher_weights=).  The teacher gets no
    gradient (ValueError if it requires one while grad mode is on)."""
    temperature, alpha = _scalar(temperature, "temperature"), _scalar(alpha, "alpha")
    for k in ("soft_weight", "hard_weight", "jsd_beta", "label_smoothing"):
        if k in kw:
            kw[k] = _scalar(kw[k], k)
    if (weights is None and teacher_weights is None and not kw
            and reduction in ("batchmean", "sum") and isinstance(teacher, torch.Tensor)
            and not teacher.requires_grad
            and _plain_labels(labels, getattr(student, "shape", (0,))[0])):
        loss = _fast_call(student, lambda: FP.kl_distill_forward_backward(
            student, teacher, labels, temperature, alpha, reduction), teacher)
        if loss is not None:
            return loss
    tin, multi = _teachers(teacher, REFUSE)

    def call(a, grad):
        return L.kl_distill(a[0], a[4:] if multi else a[4], a[1], temperature, alpha, reduction,
                            weights=a[2], teacher_weights=a[3], compute_grad=grad, **kw)
    return _apply(call, [("student", student, True, "grad_student"),
                         ("labels", labels, False, DETACH), ("weights", weights, False, REFUSE),
                         ("teacher_weights", teacher_weights, False, REFUSE)] + tin)[0]


def logit_mse(student, teacher, reduction="mean", *, labels=None, weights=None,
              teacher_weights=None, **kw):
    """kdlib.logit_mse as an autograd function of student (teacher: no gradient)."""
    for k in ("alpha", "soft_weight", "hard_weight", "label_smoothing"):
        if k in kw:
            kw[k] = _scalar(kw[k], k)
    tin, multi = _teachers(teacher, REFUSE)

    def call(a, grad):
        return L.logit_mse(a[0], a[4:] if multi else a[4], reduction, labels=a[1], weights=a[2],
                           teacher_weights=a[3], compute_grad=grad, **kw)
    return _apply(call, [("student", student, True, "grad_student"),
                         ("labels", labels, False, DETACH), ("weights", weights, False, REFUSE),
                         ("teacher_weights", teacher_weights, False, REFUSE)] + tin)[0]


def pseudo_label(student, teacher, threshold=0.95, class_thresholds=None, *, return_mask=True,
                 weights=None, teacher_weights=None, **kw):
    """kdlib.pseudo_label as an autograd function of student (tllib
    ConfidenceBasedSelfTrainingLoss): returns PseudoLabelOutput(loss, mask,
    pseudo_labels), so `loss, mask, pl = pseudo_label(s, t, 0.95)` works;
    return_mask=False returns the loss alone.  The teacher is detached (as
    in tllib); per-sample weights get no gradient (ValueError if they
    require one)."""
    threshold = _scalar(threshold, "threshold")
    if (not return_mask and class_thresholds is None and weights is None
            and teacher_weights is None and not kw and isinstance(teacher, torch.Tensor)):
        t = teacher.detach()
        loss = _fast_call(student, lambda: FP.pseudo_label_forward_backward(
            student, t, threshold), t)
        if loss is not None:
            return loss
    tin, multi = _teachers(teacher, DETACH)

    def call(a, grad):
        return L.pseudo_label(a[0], a[4:] if multi else a[4], threshold, a[1], weights=a[2],
                              teacher_weights=a[3], compute_grad=grad, **kw)
    loss, r = _apply(call, [("student", student, True, "grad_student"),
                            ("class_thresholds", class_thresholds, False, DETACH),
                            ("weights", weights, False, REFUSE),
                            ("teacher_weights", teacher_weights, False, REFUSE)] + tin)
    if not return_mask:
        return loss
    return PseudoLabelOutput(loss, *_labels_out(r, student.shape[:-1]))


def strong_weak_consistency(strong, weak, threshold=0.7, temperature=0.85, *, return_mask=False,
                            class_thresholds=None, weights=None, **kw):
    """kdlib.strong_weak_consistency as an autograd function of strong (tllib
    StrongWeakConsistencyLoss; the weak view is detached, as in tllib).
    return_mask=True returns PseudoLabelOutput(loss, mask, pseudo_labels)."""
    threshold, temperature = _scalar(threshold, "threshold"), _scalar(temperature, "temperature")

    def call(a, grad):
        return L.strong_weak_consistency(a[0], a[1], threshold, temperature,
                                         class_thresholds=a[2], weights=a[3], compute_grad=grad,
                                         **kw)
    loss, r = _apply(call, [("strong", strong, True, "grad_student"),
                            ("weak", weak, True, DETACH),
                            ("class_thresholds", class_thresholds, False, DETACH),
                            ("weights", weights, False, REFUSE)])
    if not return_mask:
        return loss
    return PseudoLabelOutput(loss, *_labels_out(r, strong.shape[:-1]))


def consistency(p1, p2, distance="l2", inputs="logits", mask=None, reduction="mean", **kw):
    """kdlib.consistency as an autograd function of both p1 and p2 (the mask
    gets no gradient: ValueError if it requires one)."""
    def call(a, grad):
        return L.consistency(a[0], a[1], distance, inputs, a[2], reduction, compute_grad=grad, **kw)
    return _apply(call, [("p1", p1, True, "grad_student"), ("p2", p2, True, "grad_teacher"),
                         ("mask", mask, False, REFUSE)])[0]


def class_balance(logits, inputs=None, **kw):
    """kdlib.class_balance as an autograd function of its input.  inputs is
    required: "logits" (softmax inside) or "probabilities" (the rows are p,
    as tllib's ClassBalanceLoss takes them); TypeError without it."""
    L._input_kind(inputs, "class_balance")
    if not kw:
        loss = _fast_call(logits, lambda: FP.class_balance_forward_backward(logits, inputs))
        if loss is not None:
            return loss

    def call(a, grad):
        return L.class_balance(a[0], inputs, compute_grad=grad, **kw)
    return _apply(call, [("logits", logits, True, "grad_student")])[0]


def mcc(logits, temperature=2.5, **kw):
    """kdlib.mcc as an autograd function of logits."""
    temperature = _scalar(temperature, "temperature")
    if not kw:
        loss = _fast_call(logits, lambda: FP.mcc_forward_backward(logits, temperature))
        if loss is not None:
            return loss

    def call(a, grad):
        return L.mcc(a[0], temperature, compute_grad=grad, **kw)
    return _apply(call, [("logits", logits, True, "grad_student")])[0]


def entropy(logits, temperature=1.0, weights=None, reduction="mean", **kw):
    """kdlib.entropy as an autograd function of logits: H(softmax(logits / T))
    per row, as -(F.softmax(x / T, 1) * F.log_softmax(x / T, 1)).sum(1); the
    weights (e.g. a confidence mask) get no gradient (ValueError if they
    require one)."""
    temperature = _scalar(temperature, "temperature")

    def call(a, grad):
        return L.entropy(a[0], temperature, a[1], reduction, compute_grad=grad, **kw)
    return _apply(call, [("logits", logits, True, "grad_student"),
                         ("weights", weights, False, REFUSE)])[0]


def fairness(logits, class_probs, label_hist, mask=None, **kw):
    """kdlib.fairness as an autograd function of logits: FreeMatch's
    self-adaptive fairness loss, USB's entropy_loss(mask, logits,
    p_model, label_hist)[0] (add lambda_e times it to the loss, as USB).
    mask, class_probs and label_hist get no gradient (detached, as USB's
    mask.bool() and detached scalers)."""
    def call(a, grad):
        return L.fairness(a[0], a[1], a[2], a[3], compute_grad=grad, **kw)
    return _apply(call, [("logits", logits, True, "grad_student"),
                         ("class_probs", class_probs, False, DETACH),
                         ("label_hist", label_hist, False, DETACH),
                         ("mask", mask, False, DETACH)])[0]


def worst_case_estimation(y_l, y_l_adv, y_u, y_u_adv, eta_prime=2.0, reduction="mean", **kw):
    """kdlib.worst_case_estimation as an autograd function of y_l_adv and
    y_u_adv (the main heads y_l, y_u only give argmax labels: detached)."""
    eta_prime = _scalar(eta_prime, "eta_prime")

    def call(a, grad):
        return L.worst_case_estimation(a[0], a[1], a[2], a[3], eta_prime, reduction,
                                       compute_grad=grad, **kw)
    return _apply(call, [("y_l", y_l, True, DETACH), ("y_l_adv", y_l_adv, True, "grad_y_l_adv"),
                         ("y_u", y_u, True, DETACH), ("y_u_adv", y_u_adv, True, "grad_y_u_adv")],
                  main=1)[0]


def linear_kl_distill(hidden, weight, bias=None, teacher=None, labels=None, temperature=1.0,
                      alpha=1.0, reduction="batchmean", *, teacher_hidden=None,
                      teacher_weight=None, teacher_bias=None, weights=None, **kw):
    """kdlib.linear_kl_distill as an autograd function of hidden, weight and
    bias (student logits = hidden @ weight.T + bias, never materialised).
    The teacher is n x C logits (teacher=) or its last layer (teacher_hidden,
    teacher_weight, teacher_bias), all tensors, none getting a gradient
    (ValueError if one requires it).  hidden may be (..., d)."""
    from ._linear import linear_kl_distill as _f
    temperature, alpha = _scalar(temperature, "temperature"), _scalar(alpha, "alpha")

    def call(a, grad):
        return _f(a[0], a[1], a[2], a[3], a[4], temperature, alpha, reduction,
                  teacher_hidden=a[5], teacher_weight=a[6], teacher_bias=a[7], weights=a[8],
                  compute_grad=grad, **kw)
    for name, w in (("weight", weight), ("teacher_weight", teacher_weight)):
        if isinstance(w, torch.Tensor) and w.dim() != 2:
            raise ValueError("%s must be 2-D (classes x features), got shape %s"
                             % (name, tuple(w.shape)))
    if bias is not None and not isinstance(bias, torch.Tensor):
        bias = torch.as_tensor(np.asarray(bias, np.float32))
    return _apply(call, [("hidden", hidden, True, "grad_hidden"),
                         ("weight", weight, True, "grad_weight"),
                         ("bias", bias, False, "grad_bias"),
                         ("teacher", teacher, True, REFUSE), ("labels", labels, False, DETACH),
                         ("teacher_hidden", teacher_hidden, True, REFUSE),
                         ("teacher_weight", teacher_weight, True, REFUSE),
                         ("teacher_bias", teacher_bias, False, REFUSE),
                         ("weights", weights, False, REFUSE)])[0]



# ---------------------------------------------------------------- nn.Module classes
#
# Modules in the style of tllib, Liger-Kernel, timm and torchdistill: options
# in the constructor, tensors in forward.  Each forwards to the function above
# (same semantics, same cached handle); extra keyword options of a function
# (threads=, check_finite=, ignore_index=, ...) are accepted by the
# constructor and passed on.

class _KdModule(torch.nn.Module):
    def __init__(self, **options):
        super().__init__()
        self.options = options

    def extra_repr(self):
        return ", ".join("%s=%r" % kv for kv in self.options.items())


class KLDistillLoss(_KdModule):
    """Hinton distillation: alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) +
    (1 - alpha) * CE(s, y) (torchdistill KDLoss; no labels: the soft term
    alone).  forward(student, teacher, labels=None)."""

    def __init__(self, temperature=1.0, alpha=1.0, reduction="batchmean", **options):
        super().__init__(temperature=temperature, alpha=alpha, reduction=reduction, **options)

    def forward(self, student, teacher, labels=None):
        return kl_distill(student, teacher, labels, **self.options)


class SoftTargetCrossEntropy(_KdModule):
    """timm SoftTargetCrossEntropy: mean_i -sum_c q_ic log softmax(s_i)_c with
    q = target probabilities.  forward(student, target)."""

    def __init__(self, reduction="mean", **options):
        super().__init__(reduction=reduction, **options)

    def forward(self, student, target):
        return soft_cross_entropy(student, target, **self.options)


class LogitMSELoss(_KdModule):
    """Logit matching F.mse_loss(student, teacher) (reduction "mean" over all
    elements).  forward(student, teacher)."""

    def __init__(self, reduction="mean", **options):
        super().__init__(reduction=reduction, **options)

    def forward(self, student, teacher):
        return logit_mse(student, teacher, **self.options)


class PseudoLabelLoss(_KdModule):
    """tllib ConfidenceBasedSelfTrainingLoss(threshold): forward(y, y_target)
    returns PseudoLabelOutput(loss, mask, pseudo_labels) (the teacher
    y_target is detached).  class_thresholds= (C values, e.g. FlexMatch's)
    may be given per call."""

    def __init__(self, threshold, **options):
        super().__init__(threshold=threshold, **options)

    def forward(self, y, y_target, class_thresholds=None):
        return pseudo_label(y, y_target, class_thresholds=class_thresholds, **self.options)


class StrongWeakConsistencyLoss(_KdModule):
    """tllib StrongWeakConsistencyLoss(threshold, temperature) (UDA):
    forward(y_strong, y_weak) -> loss (the weak view is detached)."""

    def __init__(self, threshold, temperature, **options):
        super().__init__(threshold=threshold, temperature=temperature, **options)

    def forward(self, y_strong, y_weak):
        return strong_weak_consistency(y_strong, y_weak, **self.options)


class ConsistencyLoss(_KdModule):
    """tllib ConsistencyLoss (Pi-model): mean_i D(p1_i, p2_i), D = "l2"
    (tllib's L2ConsistencyLoss: sum_c (p1 - p2)^2), "kl" or "js"; inputs
    "logits" (softmax inside) or "probabilities" (tllib passes
    probabilities).  forward(p1, p2, mask=None); both inputs get a gradient."""

    def __init__(self, distance="l2", inputs="logits", reduction="mean", **options):
        super().__init__(distance=distance, inputs=inputs, reduction=reduction, **options)

    def forward(self, p1, p2, mask=None):
        return consistency(p1, p2, mask=mask, **self.options)


class ClassBalanceLoss(_KdModule):
    """tllib ClassBalanceLoss: BCE(mean_i p_i, uniform).  inputs is required:
    "probabilities" (as tllib's module takes) or "logits".  num_classes, if
    given, is checked against the input.  forward(x)."""

    def __init__(self, num_classes=None, *, inputs=None, **options):
        L._input_kind(inputs, "ClassBalanceLoss")
        super().__init__(inputs=inputs, **options)
        self.num_classes = num_classes

    def forward(self, x):
        if self.num_classes is not None and x.shape[-1] != self.num_classes:
            raise ValueError("ClassBalanceLoss(num_classes=%d) got %d classes"
                             % (self.num_classes, x.shape[-1]))
        return class_balance(x, **self.options)


class MinimumClassConfusionLoss(_KdModule):
    """tllib MinimumClassConfusionLoss(temperature): forward(logits)."""

    def __init__(self, temperature=2.5, **options):
        super().__init__(temperature=temperature, **options)

    def forward(self, logits):
        return mcc(logits, **self.options)


class EntropyLoss(_KdModule):
    """Entropy minimisation H(softmax(logits / T)) (Grandvalet & Bengio 2005;
    tllib's entropy(F.softmax(logits, 1), reduction)): EntropyLoss(temperature=1.0,
    reduction="mean"); forward(logits, weights=None)."""

    def __init__(self, temperature=1.0, reduction="mean", **options):
        super().__init__(temperature=temperature, reduction=reduction, **options)

    def forward(self, logits, weights=None):
        return entropy(logits, weights=weights, **self.options)


class FairnessLoss(_KdModule):
    """FreeMatch's self-adaptive fairness loss (USB freematch.entropy_loss):
    forward(logits_s, class_probs, label_hist, mask=None) with class_probs /
    label_hist FreeMatch's p_model / label_hist (FreeMatchThreshold's
    state("class_probs") / state("label_histogram")) and mask its 0/1 mask."""

    def forward(self, logits_s, class_probs, label_hist, mask=None):
        return fairness(logits_s, class_probs, label_hist, mask, **self.options)


class WorstCaseEstimationLoss(_KdModule):
    """tllib WorstCaseEstimationLoss(eta_prime) (DST):
    forward(y_l, y_l_adv, y_u, y_u_adv); y_l, y_u only give argmax labels."""

    def __init__(self, eta_prime, **options):
        super().__init__(eta_prime=eta_prime, **options)

    def forward(self, y_l, y_l_adv, y_u, y_u_adv):
        return worst_case_estimation(y_l, y_l_adv, y_u, y_u_adv, **self.options)


class FusedLinearKLDistillLoss(_KdModule):
    """KL distillation of the student's last linear layer without n x C logits
    (Liger LigerFusedLinearJSD / fused-linear distillation):
    forward(student_input, student_weight, teacher_input=None,
    teacher_weight=None, labels=None, *, student_bias=None,
    teacher_bias=None, teacher_logits=None).  Give either the teacher's last
    layer (teacher_input, teacher_weight) or teacher_logits.
    divergence="jsd", jsd_beta= give Liger's JSD."""

    def __init__(self, temperature=1.0, alpha=1.0, reduction="batchmean", **options):
        super().__init__(temperature=temperature, alpha=alpha, reduction=reduction, **options)

    def forward(self, student_input, student_weight, teacher_input=None, teacher_weight=None,
                labels=None, *, student_bias=None, teacher_bias=None, teacher_logits=None):
        return linear_kl_distill(student_input, student_weight, student_bias, teacher_logits, labels,
                                 teacher_hidden=teacher_input, teacher_weight=teacher_weight,
                                 teacher_bias=teacher_bias, **self.options)


__all__ += ["KLDistillLoss", "SoftTargetCrossEntropy", "LogitMSELoss", "PseudoLabelLoss",
            "StrongWeakConsistencyLoss", "ConsistencyLoss", "ClassBalanceLoss",
            "MinimumClassConfusionLoss", "EntropyLoss", "FairnessLoss", "WorstCaseEstimationLoss",
            "FusedLinearKLDistillLoss"]


# ---------------------------------------------------------------- EMA teacher of a model

class EMATeacher(torch.nn.Module):
    """Mean Teacher over a torch model (tllib EMATeacher(model, alpha)):

        ema = kdt.EMATeacher(model, alpha=0.999)
        ...  optimizer.step()
        ema.update()                 # teacher = a_t teacher + (1 - a_t) student
        y_t = ema(x)                 # the teacher's forward (no grad, eval mode)

    The average runs in libkd (kdlib.EMATeacher) over every float32
    parameter (averaged) and float32 buffer (copied: BatchNorm running
    statistics, kind "copy"); other buffers (BatchNorm's int64
    num_batches_tracked) are copied by update() in PyTorch.  ema.teacher is a
    copy of the model whose float32 tensors are views of libkd's teacher
    storage: it always shows the current average, without a copy per update.

    The student's tensors are looked up again at every call, so replacing a
    parameter's storage (p.data = ..., load_state_dict into the model) is
    followed, not silently ignored; a changed shape or dtype raises
    ValueError.  Parameters must be CPU, contiguous and float32 (TypeError /
    ValueError otherwise).

    alpha: the decay a in [0, 1]; warmup: True (Mean Teacher's
    min(a, 1 - 1/(t+1))), "tf" or False.  swap() exchanges the student's and
    the teacher's values (twice restores both), copy_to() writes the teacher
    into the student, save(path) / load(path) use libkd's crash-safe state
    file (values and the step counter of the warm-up), state_dict() holds the
    teacher's tensors (the step counter is kept by save/load only).
    """

    def __init__(self, model, alpha=0.999, warmup=True, threads=1):
        super().__init__()
        import copy
        from ._ema import EMATeacher as _Ema
        object.__setattr__(self, "_student", model)    # not a submodule: no state_dict copy
        self.teacher = copy.deepcopy(model)
        self.teacher.requires_grad_(False)
        self.teacher.eval()
        self._names, kinds, self._other = [], [], []
        for name, p in model.named_parameters():
            self._names.append(name)
            kinds.append("average")
        for name, b in model.named_buffers():
            if b.dtype == torch.float32:
                self._names.append(name)
                kinds.append("copy")
            else:
                self._other.append(name)
        if not self._names:
            raise ValueError("EMATeacher: the model has no parameters or float32 buffers")
        self._specs = [(t.shape, t.dtype) for t in self._tensors(model, self._names)]
        self._ema = _Ema(self._arrays(), decay=alpha, warmup=warmup, kinds=kinds, threads=threads)
        self._bind_teacher()

    # -- the student's tensors, looked up at every call --
    @staticmethod
    def _tensors(model, names):
        table = dict(model.named_parameters())
        table.update(model.named_buffers())
        try:
            return [table[n] for n in names]
        except KeyError as exc:
            raise ValueError("EMATeacher: the model no longer has %s" % exc)

    def _arrays(self):
        out = []
        for name, t in zip(self._names, self._tensors(self._student, self._names)):
            if t.device.type != "cpu":
                raise ValueError("EMATeacher: %s is on %s; kdlib averages CPU tensors" % (name, t.device))
            if t.dtype != torch.float32:
                raise TypeError("EMATeacher: %s is %s; kdlib averages float32 tensors" % (name, t.dtype))
            if hasattr(self, "_specs"):
                shape = self._specs[len(out)][0]
                if t.shape != shape:
                    raise ValueError("EMATeacher: %s changed shape from %s to %s"
                                     % (name, tuple(shape), tuple(t.shape)))
            if not t.is_contiguous():
                raise ValueError("EMATeacher: %s is not contiguous" % name)
            out.append(t.detach().numpy())
        return out

    def _bind_teacher(self):
        """Point the teacher module's float32 tensors at libkd's storage."""
        import warnings
        targets = self._tensors(self.teacher, self._names)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)       # read-only NumPy view
            for i, t in enumerate(targets):
                t.data = torch.from_numpy(self._ema.teacher(i))

    def _copy_other_buffers(self, to_teacher=True):
        src = dict(self._student.named_buffers())
        dst = dict(self.teacher.named_buffers())
        for name in self._other:
            a, b = (src[name], dst[name]) if to_teacher else (dst[name], src[name])
            with torch.no_grad():
                b.copy_(a)

    # -- the EMA --
    @property
    def alpha(self):
        return self._ema.decay

    @alpha.setter
    def alpha(self, value):
        self._ema.decay = value

    @property
    def step(self):
        return self._ema.step

    def update(self):
        """One EMA step from the student's current tensors."""
        self._ema.update(self._arrays())
        self._copy_other_buffers()

    def forward(self, *args, **kwargs):
        with torch.no_grad():
            return self.teacher(*args, **kwargs)

    def train(self, mode=True):
        """The teacher stays in eval mode (its BatchNorm statistics come from the average)."""
        super().train(mode)
        self.teacher.eval()
        return self

    def swap(self):
        """Exchange the student's and the teacher's values in place (twice restores both)."""
        self._ema.swap(self._arrays())

    def copy_to(self, model=None):
        """Write the teacher into the student (or into another model of the same structure)."""
        if model is None or model is self._student:
            self._ema.copy_to(self._arrays())
            self._copy_other_buffers(to_teacher=False)
            return
        dst = self._tensors(model, self._names)
        with torch.no_grad():
            for d, s in zip(dst, self._tensors(self.teacher, self._names)):
                d.copy_(s)

    def save(self, path):
        self._ema.save(path)

    def load(self, path):
        self._ema.load(path)
        self._bind_teacher()

    def close(self):
        self._ema.close()


__all__ += ["EMATeacher"]


# ---------------------------------------------------------------- threshold algorithms

from ._torch_threshold import (ThresholdOutput, FlexMatchThreshold,  # noqa: E402
                               FreeMatchThreshold, SoftMatchWeighting, AdaMatchThreshold,
                               DashThreshold, DebiasPLThreshold)

__all__ += ["ThresholdOutput", "FlexMatchThreshold", "FreeMatchThreshold", "SoftMatchWeighting",
            "AdaMatchThreshold", "DashThreshold", "DebiasPLThreshold"]


# ---------------------------------------------------------------- no-autograd fast path

from ._fast import (kl_distill_forward_backward, cross_entropy_forward_backward,  # noqa: E402
                    pseudo_label_forward_backward, class_balance_forward_backward,
                    mcc_forward_backward)

__all__ += ["kl_distill_forward_backward", "cross_entropy_forward_backward",
            "pseudo_label_forward_backward", "class_balance_forward_backward",
            "mcc_forward_backward"]
