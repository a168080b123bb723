"""The shortest path from torch tensors to libkd: *_forward_backward functions
without autograd, re-exported by kdlib.torch.

    loss, grad = kdt.kl_distill_forward_backward(logits, teacher, labels, 4.0, 0.9)
    logits.backward(grad)          # or torch.autograd.backward([logits, other], [grad, None])

Each returns (loss, grad): the loss as a float32 tensor (0-d, or n values for
reduction="none") and d loss / d input as a new n x C float32 tensor (or
written into out=, a contiguous n x C float32 tensor reused across steps: a
fresh large tensor costs page faults on every call), from one
kd_loss_forward_backward (the gradient of the mean / sum for upstream 1; for
reduction="none" each row's gradient of its own loss).  The inputs must be 2-D
float32 CPU tensors with unit column stride (rows may be strided); labels
int32 (passed as they are) or another integer dtype (converted, range-checked).
Nothing else is converted: a wrong input raises TypeError / ValueError, a bad
value the C status as a KdError.

Why it is faster than kdlib.torch.kl_distill: no torch.autograd.Function (an
empty one costs about 9x the 128 x 10 kernel), one handle per configuration and
thread kept with its parameters set, and per call only the bind calls and the
compute call through ctypes prototypes taking the tensors' data_ptr() as
integers (no NumPy views, no generic argument checks in Python: libkd checks
the values).  The tensors must stay alive during the call only; the handle
keeps no reference after it.
"""
import ctypes
import threading

import torch

from . import _losses as L
from ._lib import library_path, raise_for_status

__all__ = ["kl_distill_forward_backward", "cross_entropy_forward_backward",
           "pseudo_label_forward_backward", "class_balance_forward_backward",
           "mcc_forward_backward"]

_vp, _i32, _i64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64


def _prototypes():
    dll = ctypes.CDLL(library_path)           # the library already loaded: same handle
    table = {"kd_loss_bind_matrix": [_vp, _i32, _vp, _i64], "kd_loss_bind_labels": [_vp, _vp],
             "kd_loss_bind_labels64": [_vp, _vp],
             "kd_loss_bind_output": [_vp, _i32, _vp, _i64],
             "kd_loss_forward_backward": [_vp, _i64, _vp]}
    out = {}
    for name, args in table.items():
        f = getattr(dll, name)
        f.argtypes, f.restype = args, ctypes.c_int
        out[name] = f
    dll.kd_loss_last_error.argtypes, dll.kd_loss_last_error.restype = [_vp], ctypes.c_char_p
    out["kd_loss_last_error"] = dll.kd_loss_last_error
    return out


_C = _prototypes()
_bind_matrix, _bind_labels = _C["kd_loss_bind_matrix"], _C["kd_loss_bind_labels"]
_bind_labels64 = _C["kd_loss_bind_labels64"]
_bind_output, _fb = _C["kd_loss_bind_output"], _C["kd_loss_forward_backward"]
_tls = threading.local()


def _not_tracing():
    """kdlib.torch._not_tracing (imported at the first call: kdlib.torch imports
    this module), then this name is rebound to it."""
    global _not_tracing
    from .torch import _not_tracing as check
    _not_tracing = check
    check()


def _handle(key, kind, c, params):
    """This thread's handle of a configuration: (Loss, its address)."""
    cache = getattr(_tls, "handles", None)
    if cache is None:
        cache = _tls.handles = {}
    if len(cache) > 64:                  # many configurations: start again
        for h, _ in cache.values():
            h.close()
        cache.clear()
    h = L.Loss(kind, c)
    try:
        for param, value in params:
            h.set(param, value)
    except Exception:
        h.close()
        raise
    entry = cache[key] = (h, ctypes.cast(h._handle(), _vp).value)
    return entry


def _config(key, kind, c, params):
    """The cached entry of key, else a new handle with params() set."""
    cache = getattr(_tls, "handles", None)
    entry = None if cache is None else cache.get(key)
    return entry if entry is not None else _handle(key, kind, c, params())


_F32 = torch.float32


def _rows(x, name, c=None, n=None):
    """(n, c, ld) of a 2-D float32 CPU tensor with unit column stride."""
    if (type(x) is torch.Tensor and x.dtype is _F32 and x.is_cpu and x.dim() == 2
            and x.is_contiguous()):                      # the common case, checked first
        rows, cols = x.shape
        if (c is None or cols == c) and (n is None or rows == n):
            return rows, cols, cols
    return _rows_checked(x, name, c, n)


def _rows_checked(x, name, c, n):
    if not isinstance(x, torch.Tensor):
        raise TypeError("%s must be a torch.Tensor, got %s" % (name, type(x).__name__))
    if x.dtype is not torch.float32:
        raise TypeError("%s must be float32 for the *_forward_backward functions, got %s "
                        "(use the autograd functions of kdlib.torch for other dtypes)"
                        % (name, x.dtype))
    if x.device.type != "cpu":
        raise ValueError("%s must be a CPU tensor, got device %s" % (name, x.device))
    if x.dim() != 2:
        raise ValueError("%s must be 2-D (rows x classes), got shape %s" % (name, tuple(x.shape)))
    rows, cols = x.shape
    s0, s1 = x.stride()
    if (cols > 1 and s1 != 1) or (rows > 1 and s0 < cols):
        raise ValueError("%s must have unit column stride and non-overlapping rows (strides %s)"
                         % (name, (s0, s1)))
    if (c is not None and cols != c) or (n is not None and rows != n):
        raise ValueError("%s has shape %s, expected %s" % (name, tuple(x.shape), (n, c)))
    return rows, cols, max(s0, cols)


def _labels(y, n):
    if not isinstance(y, torch.Tensor) or y.is_floating_point() or y.is_complex() \
            or y.dtype is torch.bool:
        raise TypeError("labels must be an integer torch.Tensor")
    if y.device.type != "cpu":
        raise ValueError("labels must be a CPU tensor, got device %s" % y.device)
    if y.dim() != 1 or y.shape[0] != n:
        raise ValueError("labels must have shape (%d,), got %s" % (n, tuple(y.shape)))
    if y.dtype is not torch.int32 and y.dtype is not torch.int64:
        y = y.to(torch.int64)                  # int8/int16/uint8: every value fits
    elif n > 1 and y.stride(0) != 1:
        y = y.contiguous()
    # int64 (PyTorch's label dtype) is bound as is with kd_loss_bind_labels64:
    # no conversion copy; the library refuses a value outside [0, C), also one
    # beyond the int32 range, instead of truncating it
    return y


def _run(entry, n, c, reduction_none, binds, out):
    h, p = entry
    if out is None:
        grad = torch.empty((n, c), dtype=torch.float32)
    else:
        if not isinstance(out, torch.Tensor) or out.shape != (n, c) or out.dtype is not _F32 \
                or not out.is_cpu or not out.is_contiguous():
            raise ValueError("out must be a contiguous float32 CPU tensor of shape %s"
                             % ((n, c),))
        grad = out
    loss = torch.empty((n,) if reduction_none else (), dtype=torch.float32)
    for role, x, ld in binds:
        ptr = x.data_ptr() or (n == 0 and _EMPTY)      # an empty tensor may have no storage
        if role == L.ARG_LABELS:
            st = (_bind_labels64 if x.dtype is torch.int64 else _bind_labels)(p, ptr)
        else:
            st = _bind_matrix(p, role, ptr, ld)
        if st:
            _fail(st, h, "kd_loss_bind")
    st = _bind_output(p, L.ARG_GRAD_STUDENT, grad.data_ptr() or _EMPTY, c)
    if st:
        _fail(st, h, "kd_loss_bind_output")
    st = _fb(p, n, loss.data_ptr())
    if st:
        _fail(st, h, "kd_loss_forward_backward")
    return loss, grad


def _fail(st, h, function):
    message = (_C["kd_loss_last_error"](ctypes.cast(h._handle(), _vp).value) or b"").decode()
    raise_for_status(st, function, message)


def _reduction(reduction, table):
    if reduction not in table:
        raise ValueError("reduction must be one of %s, got %r" % (", ".join(table), reduction))
    return table[reduction]


def kl_distill_forward_backward(student, teacher, labels=None, temperature=1.0, alpha=1.0,
                                reduction="batchmean", *, threads=1, out=None):
    """(loss, d loss / d student) of kdlib.torch.kl_distill (Hinton: alpha T^2
    KL + (1 - alpha) CE with labels), without autograd."""
    _not_tracing()
    n, c, ld = _rows(student, "student")
    _, _, ldt = _rows(teacher, "teacher", c, n)
    key = (L.KL_DISTILL, c, temperature, alpha, reduction, threads, labels is None)
    entry = _config(key, L.KL_DISTILL, c, lambda: [
            (L.PARAM_REDUCTION, _reduction(reduction, L._KL_REDUCTIONS)),
            (L.PARAM_THREADS, int(threads)),
            (L.PARAM_TEMPERATURE, float(temperature)), (L.PARAM_ALPHA, float(alpha))])
    binds = [(L.ARG_STUDENT, student, ld), (L.ARG_TEACHER, teacher, ldt)]
    binds.append((L.ARG_LABELS, _labels(labels, n), 0) if labels is not None
                 else (L.ARG_LABELS, _NULL, 0))
    return _run(entry, n, c, reduction == "none", binds, out)


class _Null:
    """An unbound role: data_ptr() 0 (NULL)."""

    dtype = None

    @staticmethod
    def data_ptr():
        return 0


_NULL = _Null()
_EMPTY_BUFFER = torch.zeros(1)
_EMPTY = _EMPTY_BUFFER.data_ptr()    # the address bound for a batch of 0 rows (never read)


def cross_entropy_forward_backward(student, labels, label_smoothing=0.0, reduction="mean", *,
                                   threads=1, out=None):
    """(loss, d loss / d student) of F.cross_entropy(student, labels,
    label_smoothing=...), ignore_index -100, without autograd."""
    _not_tracing()
    n, c, ld = _rows(student, "student")
    key = (L.CROSS_ENTROPY, c, label_smoothing, reduction, threads)
    entry = _config(key, L.CROSS_ENTROPY, c, lambda: [
            (L.PARAM_REDUCTION, _reduction(reduction, L._REDUCTIONS)),
            (L.PARAM_THREADS, int(threads)),
            (L.PARAM_LABEL_SMOOTHING, float(label_smoothing))])
    return _run(entry, n, c, reduction == "none",
                [(L.ARG_STUDENT, student, ld), (L.ARG_LABELS, _labels(labels, n), 0)], out)


def pseudo_label_forward_backward(student, teacher, threshold=0.95, reduction="mean", *,
                                  threads=1, out=None):
    """(loss, d loss / d student) of kdlib.torch.pseudo_label (tllib
    ConfidenceBasedSelfTrainingLoss: the teacher's argmax where its
    confidence > threshold), without autograd, mask and pseudo-labels."""
    _not_tracing()
    n, c, ld = _rows(student, "student")
    _, _, ldt = _rows(teacher, "teacher", c, n)
    key = (L.PSEUDO_LABEL, c, threshold, reduction, threads)
    entry = _config(key, L.PSEUDO_LABEL, c, lambda: [
            (L.PARAM_REDUCTION, _reduction(reduction, L._REDUCTIONS)),
            (L.PARAM_THREADS, int(threads)),
            (L.PARAM_THRESHOLD, float(threshold))])
    return _run(entry, n, c, reduction == "none",
                [(L.ARG_STUDENT, student, ld), (L.ARG_TEACHER, teacher, ldt)], out)


def class_balance_forward_backward(x, inputs=None, *, threads=1, out=None):
    """(loss, d loss / d x) of kdlib.torch.class_balance; inputs "logits" or
    "probabilities" is required (TypeError without), as there."""
    _not_tracing()
    L._input_kind(inputs, "class_balance_forward_backward")
    n, c, ld = _rows(x, "x")
    key = (L.CLASS_BALANCE, c, inputs, threads)
    entry = _config(key, L.CLASS_BALANCE, c, lambda: [
            (L.PARAM_THREADS, int(threads)), (L.PARAM_INPUT_TYPE, L._INPUTS[inputs])])
    return _run(entry, n, c, False, [(L.ARG_STUDENT, x, ld)], out)


def mcc_forward_backward(logits, temperature=2.5, *, threads=1, out=None):
    """(loss, d loss / d logits) of kdlib.torch.mcc (tllib
    MinimumClassConfusionLoss), without autograd."""
    _not_tracing()
    n, c, ld = _rows(logits, "logits")
    key = (L.MCC, c, temperature, threads)
    entry = _config(key, L.MCC, c, lambda: [
            (L.PARAM_THREADS, int(threads)), (L.PARAM_TEMPERATURE, float(temperature))])
    return _run(entry, n, c, False, [(L.ARG_STUDENT, logits, ld)], out)
