"""Label tools (include/kdlib/labels.h): stateless functions, and the
cleanlab-compatible confident learning (kd_cleanlab_*) under cleanlab 2.x's
names, argument orders and defaults."""
import ctypes
import warnings

import numpy as np

from . import _arrays as A
from ._lib import lib, raise_for_status, require
from ._losses import LossResult

SELECT_PROBABILITIES, SELECT_LOGITS, SELECT_NON_STRICT = 0, 1, 2
TSA_NONE, TSA_LINEAR, TSA_EXP, TSA_LOG = 0, 1, 2, 3
_TSA = {"none": TSA_NONE, "linear": TSA_LINEAR, "exp": TSA_EXP, "log": TSA_LOG}
SCORE_SELF_CONFIDENCE, SCORE_NORMALIZED_MARGIN, SCORE_MARGIN = 0, 1, 2
SCORE_CONFIDENCE_WEIGHTED_ENTROPY = 3
SOFT_LABEL_ONEHOT, SOFT_LABEL_PROBABILITIES = 0, 1
SOFT_LABEL_SUSPECTS_ONLY, SOFT_LABEL_CONFIDENCE_WEIGHT = 1, 2
CLEANLAB_CALIBRATE, CLEANLAB_CONVERGE = 1, 2
CLEANLAB_OFF_DIAGONAL, CLEANLAB_OFF_DIAGONAL_CALIBRATED, CLEANLAB_OFF_DIAGONAL_CUSTOM = 0, 1, 2
(CLEANLAB_PRUNE_BY_NOISE_RATE, CLEANLAB_PRUNE_BY_CLASS, CLEANLAB_BOTH, CLEANLAB_CONFIDENT_LEARNING,
 CLEANLAB_PREDICTED_NEQ_GIVEN, CLEANLAB_LOW_NORMALIZED_MARGIN,
 CLEANLAB_LOW_SELF_CONFIDENCE) = range(7)
CLEANLAB_RANK_NONE = -1
_SCORES = {"self_confidence": SCORE_SELF_CONFIDENCE, "normalized_margin": SCORE_NORMALIZED_MARGIN,
           "margin": SCORE_MARGIN}
_ERR_SIZE = 512


def _call(function, fn, *args):
    err = ctypes.create_string_buffer(_ERR_SIZE)
    st = fn(*args, err, _ERR_SIZE)
    if st:
        raise_for_status(st, function, err.value.decode(errors="replace"))


def _ignore(ignore_index):
    ignore_index = int(ignore_index)
    if not -2**31 <= ignore_index < 2**31:
        raise ValueError("ignore_index must fit in int32, got %d" % ignore_index)
    return ignore_index


def select_pseudo_labels(scores, threshold=0.95, *, logits=False, inclusive=False,
                         class_thresholds=None, top_k_per_class=0):
    """Confidence, argmax and threshold mask of teacher scores
    (kd_select_pseudo_labels).  scores: n x C probabilities, or logits with
    logits=True.  Returns LossResult-like object with confidence (float32 n),
    pseudo_labels (int32 n), mask (float32 0/1 n), num_selected (int)."""
    scores, ld = A.matrix(scores, "scores")
    n, c = scores.shape
    flags = (SELECT_LOGITS if logits else 0) | (SELECT_NON_STRICT if inclusive else 0)
    if class_thresholds is not None:
        class_thresholds = A.float_vector(class_thresholds, "class_thresholds", c, copy_lists=True)
    conf = np.empty(n, np.float32)
    labels = np.empty(n, np.int32)
    mask = np.empty(n, np.float32)
    count = ctypes.c_int64()
    _call("kd_select_pseudo_labels", lib.kd_select_pseudo_labels, n, c, A.fptr(scores), ld, flags,
          float(threshold), A.fptr(class_thresholds), int(top_k_per_class), A.fptr(conf),
          A.i32ptr(labels), A.fptr(mask), ctypes.byref(count))
    return LossResult(confidence=conf, pseudo_labels=labels, mask=mask, num_selected=count.value)


def tsa_threshold(schedule, step, total_steps, num_classes):
    """UDA's training-signal annealing threshold (kd_tsa_threshold):
    alpha(step / total_steps) (1 - 1/C) + 1/C; schedule "linear", "exp",
    "log" or "none" (1)."""
    if not isinstance(schedule, str) or schedule.lower() not in _TSA:
        raise ValueError("schedule must be one of %s, got %r" % (", ".join(_TSA), schedule))
    out = ctypes.c_double()
    _call("kd_tsa_threshold", lib.kd_tsa_threshold, _TSA[schedule.lower()], int(step),
          int(total_steps), int(num_classes), ctypes.byref(out))
    return out.value


def tsa_mask(logits, threshold, labels=None, ignore_index=-100):
    """The labelled rows TSA keeps (kd_tsa_mask): float32 0/1 of n, 1 where
    the row's max softmax (labels None, as USB) or its label's probability
    (labels given, as the UDA paper) is <= threshold.  Returns an object with
    mask and num_kept."""
    logits, ld = A.matrix(logits, "logits")
    n, c = logits.shape
    if labels is not None:
        labels = A.int_vector(labels, "labels", n)
    mask = np.empty(n, np.float32)
    count = ctypes.c_int64()
    _call("kd_tsa_mask", lib.kd_tsa_mask, n, c, A.fptr(logits), ld, A.i32ptr(labels),
          _ignore(ignore_index), float(threshold), A.fptr(mask), ctypes.byref(count))
    return LossResult(mask=mask, num_kept=count.value)


def label_quality(probs, labels, score="self_confidence", ignore_index=-100):
    """Label quality scores and ranking, worst first (kd_label_quality).
    score: "self_confidence", "normalized_margin" (cleanlab >= 2) or "margin".
    Returns an object with scores (float32 n, NaN for ignored rows),
    ranking (int64 n: scored rows by ascending score, then ignored rows) and
    num_ranked."""
    probs, ld = A.matrix(probs, "probs")
    n, c = probs.shape
    labels = A.int_vector(labels, "labels", n)
    if not isinstance(score, str) or score.lower() not in _SCORES:
        raise ValueError("score must be one of %s, got %r" % (", ".join(_SCORES), score))
    scores = np.empty(n, np.float32)
    ranking = np.empty(n, np.int64)
    count = ctypes.c_int64()
    _call("kd_label_quality", lib.kd_label_quality, n, c, A.fptr(probs), ld, A.i32ptr(labels),
          _ignore(ignore_index), _SCORES[score.lower()], A.fptr(scores), A.i64ptr(ranking),
          ctypes.byref(count))
    return LossResult(scores=scores, ranking=ranking, num_ranked=count.value)


def confident_learning_suspects(probs, labels, ignore_index=-100):
    """Confident-learning suspects by the paper's rule (kd_find_label_issues).
    Returns an object with class_thresholds (float32 C), confident_class
    (int32 n, -1 none), suspect (bool n), num_suspects, and issues: the
    suspects' row indices ranked by self-confidence, worst first.  (Before
    issue 19 this was kdlib.find_label_issues(probs, labels); that call still
    works, with a DeprecationWarning.)"""
    probs, ld = A.matrix(probs, "probs")
    n, c = probs.shape
    labels = A.int_vector(labels, "labels", n)
    thresholds = np.empty(c, np.float32)
    confident = np.empty(n, np.int32)
    suspect = np.empty(n, np.uint8)
    count = ctypes.c_int64()
    _call("kd_find_label_issues", lib.kd_find_label_issues, n, c, A.fptr(probs), ld,
          A.i32ptr(labels), _ignore(ignore_index), A.fptr(thresholds), A.i32ptr(confident),
          A.u8ptr(suspect), ctypes.byref(count))
    suspect = suspect.astype(bool)
    ranking = label_quality(probs, labels, "self_confidence", ignore_index).ranking
    issues = ranking[suspect[ranking]]
    return LossResult(class_thresholds=thresholds, confident_class=confident, suspect=suspect,
                      num_suspects=count.value, issues=issues)


def soft_labels(labels, label_weight=0.7, probs=None, predictions=None, mode="onehot",
                ignore_index=-100, num_classes=None, out=None):
    """q = w onehot(y) + (1 - w) onehot(pred) (mode="onehot"; pred =
    predictions or argmax probs) or + (1 - w) probs (mode="probabilities")
    (kd_soft_labels).  Returns the n x C float32 matrix (out if given; out may
    be probs itself)."""
    n = len(labels)
    labels = A.int_vector(labels, "labels", n)
    if mode not in ("onehot", "probabilities"):
        raise ValueError("mode must be 'onehot' or 'probabilities', got %r" % (mode,))
    ld_probs = 0
    if probs is not None:
        probs, ld_probs = A.matrix(probs, "probs")
        if probs.shape[0] != n:
            raise ValueError("probs must have %d rows (one per label), got %d" % (n, probs.shape[0]))
        if num_classes is not None and probs.shape[1] != num_classes:
            raise ValueError("probs must have num_classes=%d columns" % num_classes)
        c = probs.shape[1]
    elif num_classes is None:
        raise ValueError("num_classes is needed when probs is not given")
    else:
        c = int(num_classes)
        if c < 1:
            raise ValueError("num_classes must be >= 1, got %d" % c)
    if predictions is not None:
        predictions = A.int_vector(predictions, "predictions", n)
    if out is None:
        out = np.empty((n, c), np.float32)
    out, ld_out = A.matrix(out, "out", shape=(n, c))
    if not out.flags.writeable:
        raise ValueError("out must be writeable")
    _call("kd_soft_labels", lib.kd_soft_labels, n, c, A.i32ptr(labels), _ignore(ignore_index),
          float(label_weight), SOFT_LABEL_ONEHOT if mode == "onehot" else SOFT_LABEL_PROBABILITIES,
          A.fptr(probs), ld_probs, A.i32ptr(predictions), A.fptr(out), ld_out)
    return out


def soft_labels_selective(labels, probs, label_weight=0.7, *, suspects=None,
                          confidence_weight=False, mode="onehot", ignore_index=-100, out=None):
    """Soft labels chosen by out-of-fold confidence (kd_soft_labels_selective):
    q_i = w_i onehot(y_i) + (1 - w_i) x_i with x_i = onehot(argmax p_i)
    (mode="onehot") or p_i (mode="probabilities"); w_i = 1 for rows that are
    not suspects when suspects (a boolean mask, e.g. find_label_issues's) is
    given, w + (1 - w) p_i,y_i with confidence_weight=True, else w.  Returns
    the n x C float32 matrix (out if given; out may be probs itself)."""
    require("kd_soft_labels_selective")
    probs, ld = A.matrix(probs, "probs")
    n, c = probs.shape
    labels = A.int_vector(labels, "labels", n)
    if mode not in ("onehot", "probabilities"):
        raise ValueError("mode must be 'onehot' or 'probabilities', got %r" % (mode,))
    flags = SOFT_LABEL_CONFIDENCE_WEIGHT if confidence_weight else 0
    sus = None
    if suspects is not None:
        sus = np.asarray(suspects)
        if sus.shape != (n,) or sus.dtype.kind not in "biu":
            raise ValueError("suspects must be a boolean mask of %d rows" % n)
        sus = np.ascontiguousarray(sus != 0, dtype=np.uint8)
        flags |= SOFT_LABEL_SUSPECTS_ONLY
    if out is None:
        out = np.empty((n, c), np.float32)
    out, ld_out = A.matrix(out, "out", shape=(n, c))
    if not out.flags.writeable:
        raise ValueError("out must be writeable")
    _call("kd_soft_labels_selective", lib.kd_soft_labels_selective, n, c, A.i32ptr(labels),
          _ignore(ignore_index), float(label_weight),
          SOFT_LABEL_ONEHOT if mode == "onehot" else SOFT_LABEL_PROBABILITIES, flags,
          A.fptr(probs), ld, A.u8ptr(sus), A.fptr(out), ld_out)
    return out


def ensemble_average(inputs, weights=None, out=None):
    """Weighted average of K teacher matrices of the same shape
    (kd_ensemble_average): logits (then softmax) or probabilities.
    Returns the n x C float32 matrix (out if given; out may be inputs[0])."""
    inputs = list(inputs)
    if not inputs:
        raise ValueError("inputs: at least one matrix is needed")
    mats, lds = [], []
    for k, x in enumerate(inputs):
        x, ld = A.matrix(x, "inputs[%d]" % k, shape=None if k == 0 else mats[0].shape)
        mats.append(x)
        lds.append(ld)
    n, c = mats[0].shape
    if weights is not None:
        weights = A.float_vector(weights, "weights", len(mats), copy_lists=True)
    if out is None:
        out = np.empty((n, c), np.float32)
    out, ld_out = A.matrix(out, "out", shape=(n, c))
    if not out.flags.writeable:
        raise ValueError("out must be writeable")
    _call("kd_ensemble_average", lib.kd_ensemble_average, n, c, len(mats), A.pointer_array(mats),
          A.int64_array(lds), A.fptr(weights), A.fptr(out), ld_out)
    return out


# ---- cleanlab-compatible confident learning (kd_cleanlab_*) -----------------

_FILTERS = {"prune_by_noise_rate": CLEANLAB_PRUNE_BY_NOISE_RATE,
            "prune_by_class": CLEANLAB_PRUNE_BY_CLASS, "both": CLEANLAB_BOTH,
            "confident_learning": CLEANLAB_CONFIDENT_LEARNING,
            "predicted_neq_given": CLEANLAB_PREDICTED_NEQ_GIVEN,
            "low_normalized_margin": CLEANLAB_LOW_NORMALIZED_MARGIN,
            "low_self_confidence": CLEANLAB_LOW_SELF_CONFIDENCE}
_CL_SCORES = {"self_confidence": SCORE_SELF_CONFIDENCE,
              "normalized_margin": SCORE_NORMALIZED_MARGIN,
              "confidence_weighted_entropy": SCORE_CONFIDENCE_WEIGHTED_ENTROPY}
_ESTIMATION = {"off_diagonal": CLEANLAB_OFF_DIAGONAL,
               "off_diagonal_calibrated": CLEANLAB_OFF_DIAGONAL_CALIBRATED,
               "off_diagonal_custom": CLEANLAB_OFF_DIAGONAL_CUSTOM}


def _choice(value, table, name):
    if not isinstance(value, str) or value not in table:
        raise ValueError("%s must be one of %s, got %r" % (name, ", ".join(table), value))
    return table[value]


def _cl_inputs(function, labels, pred_probs, ignore_index):
    """(pred_probs as float32 with its ld, labels as int32, n, c).  cleanlab
    takes float64 probabilities: other dtypes are rounded to float32 (a
    copy), the precision every kdlib function reads."""
    require(function)
    if not isinstance(pred_probs, np.ndarray) or pred_probs.dtype != np.float32:
        pred_probs = np.ascontiguousarray(pred_probs, dtype=np.float32)
    pred_probs, ld = A.matrix(pred_probs, "pred_probs")
    n, c = pred_probs.shape
    labels = A.int_vector(labels, "labels", n)
    return pred_probs, ld, labels, n, c, _ignore(ignore_index)


def _no_multi_label(multi_label):
    if multi_label:
        raise NotImplementedError("multi_label=True: kdlib implements cleanlab's multi-class "
                                  "functions only")


def _no_thresholds(thresholds):
    if thresholds is not None:
        raise NotImplementedError("thresholds: kdlib computes cleanlab's default thresholds "
                                  "(pass thresholds=None)")


def _joint_arg(confident_joint, c):
    if confident_joint is None:
        return None
    cj = np.asarray(confident_joint)
    if cj.shape != (c, c) or cj.dtype.kind not in "iuf":
        raise ValueError("confident_joint must be a %d x %d array of counts, got shape %s"
                         % (c, c, cj.shape))
    if cj.dtype.kind == "f" and not np.all(np.isfinite(cj) & (cj == np.round(cj))):
        raise ValueError("confident_joint must hold whole counts")
    return np.ascontiguousarray(cj, dtype=np.int64)


def find_label_issues(labels=None, pred_probs=None, *args, return_indices_ranked_by=None,
                      rank_by_kwargs=None, filter_by="prune_by_noise_rate", frac_noise=1.0,
                      num_to_remove_per_class=None, min_examples_per_class=1,
                      confident_joint=None, n_jobs=None, verbose=False, multi_label=False,
                      ignore_index=-100, probs=None):
    """cleanlab.filter.find_label_issues (kd_cleanlab_find_label_issues): the
    boolean mask of label issues, or, with return_indices_ranked_by
    ("self_confidence", "normalized_margin", "confidence_weighted_entropy"),
    the issues' row indices sorted by that score, lowest first (equal scores
    in row order).  rank_by_kwargs may hold {"adjust_pred_probs": bool}.
    n_jobs and verbose are accepted and ignored (single-threaded C);
    confident_joint (a caller's joint) and multi_label=True are not
    supported.  Rows labelled ignore_index (a kdlib extension) are never
    issues.

    The call of kdlib <= 0.2, find_label_issues(probs, labels[, ignore_index])
    with the 2-D probabilities first, still works: it is
    confident_learning_suspects() (with a DeprecationWarning)."""
    first = probs if probs is not None else labels
    if probs is not None or (np.ndim(first) == 2 and pred_probs is not None
                             and np.ndim(pred_probs) == 1):
        old_labels = labels if probs is not None else pred_probs
        old_probs = first
        if args:
            ignore_index = args[0]
        warnings.warn("kdlib.find_label_issues(probs, labels) is the paper's rule, now "
                      "kdlib.confident_learning_suspects(probs, labels); find_label_issues "
                      "takes cleanlab's (labels, pred_probs)", DeprecationWarning, stacklevel=2)
        return confident_learning_suspects(old_probs, old_labels, ignore_index)
    if args:
        raise TypeError("find_label_issues() takes 2 positional arguments (labels, pred_probs) "
                        "but %d were given" % (2 + len(args)))
    if labels is None or pred_probs is None:
        raise TypeError("find_label_issues() needs labels and pred_probs")
    _no_multi_label(multi_label)
    if confident_joint is not None:
        raise NotImplementedError("confident_joint: kdlib's find_label_issues computes the "
                                  "confident joint itself (pass confident_joint=None)")
    pred_probs, ld, labels, n, c, ig = _cl_inputs("kd_cleanlab_find_label_issues", labels,
                                                  pred_probs, ignore_index)
    fb = _choice(filter_by, _FILTERS, "filter_by")
    kwargs = dict(rank_by_kwargs or {})
    adjust = kwargs.pop("adjust_pred_probs", False)
    if kwargs:
        raise TypeError("rank_by_kwargs: get_label_quality_scores() got unexpected keyword "
                        "arguments %s" % ", ".join(sorted(kwargs)))
    if return_indices_ranked_by is None:
        rank = CLEANLAB_RANK_NONE
        if adjust:
            raise ValueError("rank_by_kwargs adjust_pred_probs needs return_indices_ranked_by")
    else:
        rank = _choice(return_indices_ranked_by, _CL_SCORES, "return_indices_ranked_by")
    ntr = None
    if num_to_remove_per_class is not None:
        ntr = A.int_vector(list(num_to_remove_per_class), "num_to_remove_per_class", c,
                           ctype=np.int64)
    mask = np.empty(n, np.uint8)
    ranked = np.empty(n, np.int64) if rank != CLEANLAB_RANK_NONE else None
    count = ctypes.c_int64()
    _call("kd_cleanlab_find_label_issues", lib.kd_cleanlab_find_label_issues, n, c,
          A.fptr(pred_probs), ld, A.i32ptr(labels), ig, fb, float(frac_noise), A.i64ptr(ntr),
          int(min_examples_per_class), rank, int(bool(adjust)), A.u8ptr(mask), A.i64ptr(ranked),
          ctypes.byref(count))
    if ranked is not None:
        return ranked[:count.value].copy()
    return mask.astype(bool)


def get_label_quality_scores(labels, pred_probs, *, method="self_confidence",
                             adjust_pred_probs=False, ignore_index=-100):
    """cleanlab.rank.get_label_quality_scores
    (kd_cleanlab_get_label_quality_scores): float64 scores in [0, 1], lower =
    label more likely wrong; method "self_confidence", "normalized_margin" or
    "confidence_weighted_entropy".  NaN for rows labelled ignore_index."""
    pred_probs, ld, labels, n, c, ig = _cl_inputs("kd_cleanlab_get_label_quality_scores", labels,
                                                  pred_probs, ignore_index)
    m = _choice(method, _CL_SCORES, "method")
    scores = np.empty(n, np.float64)
    _call("kd_cleanlab_get_label_quality_scores", lib.kd_cleanlab_get_label_quality_scores, n, c,
          A.fptr(pred_probs), ld, A.i32ptr(labels), ig, m, int(bool(adjust_pred_probs)),
          A.dptr(scores))
    return scores


def get_confident_thresholds(labels, pred_probs, multi_label=False, *, ignore_index=-100):
    """cleanlab.count.get_confident_thresholds (kd_cleanlab_confident_thresholds):
    the mean self-confidence of each class (2 for a class with no row), float64."""
    _no_multi_label(multi_label)
    pred_probs, ld, labels, n, c, ig = _cl_inputs("kd_cleanlab_confident_thresholds", labels,
                                                  pred_probs, ignore_index)
    t = np.empty(c, np.float64)
    _call("kd_cleanlab_confident_thresholds", lib.kd_cleanlab_confident_thresholds, n, c,
          A.fptr(pred_probs), ld, A.i32ptr(labels), ig, A.dptr(t))
    return t


def compute_confident_joint(labels, pred_probs, *, thresholds=None, calibrate=True,
                            multi_label=False, return_indices_of_off_diagonals=False,
                            ignore_index=-100):
    """cleanlab.count.compute_confident_joint (kd_cleanlab_confident_joint):
    the c x c int64 confident joint [given][true]; with
    return_indices_of_off_diagonals, (joint, indices of the off-diagonal
    rows).  thresholds other than None are not supported."""
    _no_multi_label(multi_label)
    _no_thresholds(thresholds)
    pred_probs, ld, labels, n, c, ig = _cl_inputs("kd_cleanlab_confident_joint", labels,
                                                  pred_probs, ignore_index)
    cj = np.empty((c, c), np.int64)
    off = np.empty(n, np.uint8)
    _call("kd_cleanlab_confident_joint", lib.kd_cleanlab_confident_joint, n, c,
          A.fptr(pred_probs), ld, A.i32ptr(labels), ig, CLEANLAB_CALIBRATE if calibrate else 0,
          A.i64ptr(cj), A.u8ptr(off), None)
    if return_indices_of_off_diagonals:
        return cj, np.flatnonzero(off)
    return cj


def estimate_joint(labels, pred_probs, *, confident_joint=None, multi_label=False,
                   ignore_index=-100):
    """cleanlab.count.estimate_joint (kd_cleanlab_estimate_joint): the
    calibrated joint P(given = i, true = j), c x c float64 summing to 1."""
    _no_multi_label(multi_label)
    pred_probs, ld, labels, n, c, ig = _cl_inputs("kd_cleanlab_estimate_joint", labels,
                                                  pred_probs, ignore_index)
    cj = _joint_arg(confident_joint, c)
    joint = np.empty((c, c), np.float64)
    _call("kd_cleanlab_estimate_joint", lib.kd_cleanlab_estimate_joint, n, c, A.fptr(pred_probs),
          ld, A.i32ptr(labels), ig, A.i64ptr(cj), A.dptr(joint))
    return joint


def estimate_py_and_noise_matrices_from_probabilities(labels, pred_probs, *, thresholds=None,
                                                      converge_latent_estimates=True,
                                                      py_method="cnt", calibrate=True,
                                                      ignore_index=-100):
    """cleanlab.count.estimate_py_and_noise_matrices_from_probabilities
    (kd_cleanlab_estimate_py_and_noise_matrices): (py, noise_matrix,
    inv_noise_matrix, confident_joint) with noise_matrix[i][j] =
    P(given i | true j) and inv_noise_matrix[j][i] = P(true j | given i).
    py_method "cnt" only; thresholds other than None are not supported."""
    _no_thresholds(thresholds)
    if py_method != "cnt":
        raise NotImplementedError("py_method=%r: kdlib implements cleanlab's default 'cnt'"
                                  % (py_method,))
    pred_probs, ld, labels, n, c, ig = _cl_inputs("kd_cleanlab_estimate_py_and_noise_matrices",
                                                  labels, pred_probs, ignore_index)
    flags = (CLEANLAB_CALIBRATE if calibrate else 0) | (
        CLEANLAB_CONVERGE if converge_latent_estimates else 0)
    py = np.empty(c, np.float64)
    nm = np.empty((c, c), np.float64)
    inv = np.empty((c, c), np.float64)
    cj = np.empty((c, c), np.int64)
    _call("kd_cleanlab_estimate_py_and_noise_matrices",
          lib.kd_cleanlab_estimate_py_and_noise_matrices, n, c, A.fptr(pred_probs), ld,
          A.i32ptr(labels), ig, flags, A.dptr(py), A.dptr(nm), A.dptr(inv), A.i64ptr(cj))
    return py, nm, inv, cj


def num_label_issues(labels, pred_probs, *, confident_joint=None,
                     estimation_method="off_diagonal", multi_label=False, ignore_index=-100):
    """cleanlab.count.num_label_issues (kd_cleanlab_num_label_issues):
    estimation_method "off_diagonal" (default), "off_diagonal_calibrated" or
    "off_diagonal_custom" (with confident_joint).  cleanlab ignores a
    confident_joint given to the other methods with a warning; so does this
    function (the C function refuses it)."""
    _no_multi_label(multi_label)
    pred_probs, ld, labels, n, c, ig = _cl_inputs("kd_cleanlab_num_label_issues", labels,
                                                  pred_probs, ignore_index)
    m = _choice(estimation_method, _ESTIMATION, "estimation_method")
    cj = _joint_arg(confident_joint, c)
    if cj is not None and m != CLEANLAB_OFF_DIAGONAL_CUSTOM:
        warnings.warn("confident_joint is only used with estimation_method="
                      "'off_diagonal_custom'; ignored", UserWarning, stacklevel=2)
        cj = None
    if cj is None and m == CLEANLAB_OFF_DIAGONAL_CUSTOM:
        raise ValueError("estimation_method='off_diagonal_custom' needs confident_joint")
    count = ctypes.c_int64()
    _call("kd_cleanlab_num_label_issues", lib.kd_cleanlab_num_label_issues, n, c,
          A.fptr(pred_probs), ld, A.i32ptr(labels), ig, m, A.i64ptr(cj), ctypes.byref(count))
    return count.value
