"""Fused linear + KL distillation (include/kdlib/linear.h)."""
import numpy as np

from . import _arrays as A
from ._lib import lib, require
from ._losses import (KL_DISTILL, REDUCTION_NONE, LossResult, _KL_REDUCTIONS, _choice, _new,
                      _bind_teacher, _kl_options, PARAM_IGNORE_INDEX)


def default_chunk_rows(num_classes):
    """kd_linear_default_chunk_rows: rows per chunk for chunk_rows=0."""
    require("kd_linear_default_chunk_rows")
    return int(lib.kd_linear_default_chunk_rows(int(num_classes)))


def linear_kl_distill(hidden, weight, bias=None, teacher=None, labels=None, temperature=1.0,
                      alpha=1.0, reduction="batchmean", *, teacher_hidden=None, teacher_weight=None,
                      teacher_bias=None, teacher_weights=None, soft_weight=None, hard_weight=None,
                      t2_scaling=True, divergence="forward_kl", jsd_beta=0.5, normalization="batch",
                      label_smoothing=0.0, ignore_index=-100, weights=None, chunk_rows=0, threads=1,
                      check_finite=False, compute_grad=True):
    """KL distillation of student logits hidden @ weight.T + bias computed
    chunk by chunk (kd_linear_kl_distill), never holding n x C.

    hidden: n x d, weight: C x d (nn.Linear.weight), bias: C or None.
    Teacher: n x C logits (teacher=, a list is averaged) or its last layer
    (teacher_hidden n x d_t, teacher_weight C x d_t, teacher_bias).
    Returns LossResult(loss, grad_hidden, grad_weight, grad_bias) (grad_bias
    None without bias)."""
    require("kd_linear_kl_distill")
    hidden, ldh = A.matrix(hidden, "hidden")
    n, d = hidden.shape
    weight, ldw = A.matrix(weight, "weight", ncols=d)
    c = weight.shape[0]
    if bias is not None:
        bias = A.float_vector(bias, "bias", c)
    if (teacher is None) == (teacher_hidden is None):
        raise ValueError("give exactly one of teacher (logits) and teacher_hidden")
    dt, ldth, ldtw = 0, 0, 0
    if teacher_hidden is not None:
        if teacher_weight is None:
            raise ValueError("teacher_hidden needs teacher_weight")
        teacher_hidden, ldth = A.matrix(teacher_hidden, "teacher_hidden")
        if teacher_hidden.shape[0] != n:
            raise ValueError("teacher_hidden must have %d rows, got %d" % (n, teacher_hidden.shape[0]))
        dt = teacher_hidden.shape[1]
        teacher_weight, ldtw = A.matrix(teacher_weight, "teacher_weight", shape=(c, dt))
        if teacher_bias is not None:
            teacher_bias = A.float_vector(teacher_bias, "teacher_bias", c)
    red = _choice(reduction, "reduction", _KL_REDUCTIONS)
    h = _new(KL_DISTILL, c, red, threads, check_finite)
    if teacher is not None:
        _bind_teacher(h, teacher, n, c, teacher_weights)
    if labels is not None:
        h.bind_labels(labels, n)
    if weights is not None:
        h.bind_weights(weights, n)
    _kl_options(h, temperature, alpha, soft_weight, hard_weight, t2_scaling, divergence, jsd_beta,
                normalization, label_smoothing)
    h.set_int(PARAM_IGNORE_INDEX, ignore_index)
    loss = np.zeros(n if red == REDUCTION_NONE else 1, np.float32)
    gh = gw = gb = None
    if compute_grad:
        gh = np.empty((n, d), np.float32)
        gw = np.empty((c, d), np.float32)
        gb = None if bias is None else np.empty(c, np.float32)
    lh = h.handle()
    try:
        lh.check_rows(n, "linear_kl_distill")
        lh._check(lib.kd_linear_kl_distill(
            lh._handle(), n, d, A.fptr(hidden), ldh, A.fptr(weight), ldw, A.fptr(bias),
            dt, A.fptr(teacher_hidden), ldth, A.fptr(teacher_weight), ldtw, A.fptr(teacher_bias),
            int(chunk_rows), A.fptr(loss), A.fptr(gh), d, A.fptr(gw), d, A.fptr(gb)),
            "kd_linear_kl_distill")
    finally:
        lh._release()
    return LossResult(loss=loss if red == REDUCTION_NONE else float(loss[0]), grad_hidden=gh,
                      grad_weight=gw, grad_bias=gb)
