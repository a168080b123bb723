"""Label tools (include/kdlib/labels.h): stateless functions."""
import ctypes

import numpy as np

from . import _arrays as A
from ._lib import lib, raise_for_status
from ._losses import LossResult

SELECT_PROBABILITIES, SELECT_LOGITS, SELECT_NON_STRICT = 0, 1, 2
SCORE_SELF_CONFIDENCE, SCORE_NORMALIZED_MARGIN, SCORE_MARGIN = 0, 1, 2
SOFT_LABEL_ONEHOT, SOFT_LABEL_PROBABILITIES = 0, 1
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


def find_label_issues(probs, labels, ignore_index=-100):
    """Confident-learning suspects (kd_find_label_issues).  Returns an object
    with class_thresholds (float32 C), confident_class (int32 n, -1 none),
    suspect (bool n), num_suspects, and issues: the suspects' row indices
    ranked by self-confidence, worst first."""
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
