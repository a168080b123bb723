"""Losses: the low-level Loss handle (kd_loss) and the functional API."""
import collections
import ctypes
import operator
import threading

import numpy as np

from . import _arrays as A
from ._handle import Handle
from ._lib import lib, raise_for_status, kd_loss_p, require, c_double_p

# ---- constants of loss.h (pinned values) ----
CROSS_ENTROPY, KL_DISTILL, LOGIT_MSE = 1, 2, 3
PSEUDO_LABEL, STRONG_WEAK, CONSISTENCY, CLASS_BALANCE, MCC, WORST_CASE = 10, 11, 12, 13, 14, 15
ENTROPY, FAIRNESS = 16, 17

PARAM_REDUCTION, PARAM_TEMPERATURE, PARAM_ALPHA, PARAM_SOFT_WEIGHT, PARAM_HARD_WEIGHT = 1, 2, 3, 4, 5
PARAM_T2_SCALING, PARAM_DIVERGENCE, PARAM_JSD_BETA, PARAM_NORMALIZATION = 6, 7, 8, 9
PARAM_IGNORE_INDEX, PARAM_LABEL_SMOOTHING, PARAM_SMOOTHING_MODE, PARAM_LABEL_WEIGHT = 10, 11, 12, 13
PARAM_THREADS, PARAM_CHECK_FINITE, PARAM_NUM_CLASSES, PARAM_KIND = 14, 15, 16, 17
PARAM_THRESHOLD, PARAM_THRESHOLD_MODE, PARAM_DISTANCE, PARAM_INPUT_TYPE = 32, 33, 34, 35
PARAM_ETA_PRIME, PARAM_UNLABELED_ROWS = 36, 37

REDUCTION_MEAN, REDUCTION_SUM, REDUCTION_NONE = 0, 1, 2
DIVERGENCE_FORWARD_KL, DIVERGENCE_REVERSE_KL, DIVERGENCE_JSD = 0, 1, 2
NORMALIZE_BATCH, NORMALIZE_VALID = 0, 1
SMOOTHING_UNIFORM, SMOOTHING_OTHERS = 0, 1
THRESHOLD_STRICT, THRESHOLD_INCLUSIVE = 0, 1
DISTANCE_L2, DISTANCE_KL, DISTANCE_JS = 0, 1, 2
INPUT_LOGITS, INPUT_PROBABILITIES = 0, 1

ARG_STUDENT, ARG_TEACHER, ARG_TARGET, ARG_LABELS, ARG_WEIGHTS = 1, 2, 3, 4, 5
ARG_GRAD_STUDENT, ARG_PER_SAMPLE = 6, 7
ARG_CLASS_THRESHOLDS, ARG_MASK, ARG_PSEUDO_LABELS, ARG_GRAD_TEACHER = 16, 17, 18, 19
ARG_LABELED_MAIN, ARG_LABELED_ADV, ARG_UNLABELED_MAIN, ARG_UNLABELED_ADV = 20, 21, 22, 23
ARG_GRAD_LABELED_ADV, ARG_GRAD_UNLABELED_ADV = 24, 25
ARG_CLASS_PROBS, ARG_LABEL_HISTOGRAM = 26, 27

# Roles by shape: matrices of n rows (num_classes columns), vectors of n values,
# and WORST_CASE's unlabeled matrices of KD_PARAM_UNLABELED_ROWS rows.
_MATRIX_INPUTS = {ARG_STUDENT, ARG_TEACHER, ARG_TARGET, ARG_LABELED_MAIN, ARG_LABELED_ADV,
                  ARG_UNLABELED_MAIN, ARG_UNLABELED_ADV}
_MATRIX_OUTPUTS = {ARG_GRAD_STUDENT, ARG_GRAD_TEACHER, ARG_GRAD_LABELED_ADV, ARG_GRAD_UNLABELED_ADV}
_VECTOR_OUTPUTS = {ARG_PER_SAMPLE, ARG_MASK}
_UNLABELED_ROLES = {ARG_UNLABELED_MAIN, ARG_UNLABELED_ADV, ARG_GRAD_UNLABELED_ADV}
# input vectors of exactly C values (copied when given as lists)
_CLASS_VECTORS = {ARG_CLASS_THRESHOLDS, ARG_CLASS_PROBS, ARG_LABEL_HISTOGRAM}
_ROLE_NAMES = {ARG_STUDENT: "student", ARG_TEACHER: "teacher", ARG_TARGET: "target",
               ARG_LABELS: "labels", ARG_WEIGHTS: "weights", ARG_GRAD_STUDENT: "grad_student",
               ARG_PER_SAMPLE: "per_sample", ARG_CLASS_THRESHOLDS: "class_thresholds",
               ARG_MASK: "mask", ARG_PSEUDO_LABELS: "pseudo_labels",
               ARG_GRAD_TEACHER: "grad_teacher", ARG_LABELED_MAIN: "labeled_main",
               ARG_LABELED_ADV: "labeled_adv", ARG_UNLABELED_MAIN: "unlabeled_main",
               ARG_UNLABELED_ADV: "unlabeled_adv", ARG_GRAD_LABELED_ADV: "grad_labeled_adv",
               ARG_GRAD_UNLABELED_ADV: "grad_unlabeled_adv", ARG_CLASS_PROBS: "class_probs",
               ARG_LABEL_HISTOGRAM: "label_hist"}
_INT64_MAX = 2**63 - 1


def count_arg(n, name="n"):
    """n as a Python int in [0, 2^63 - 1] (an integer, not a float: 4.7 rows is an error)."""
    try:
        n = operator.index(n)
    except TypeError:
        raise TypeError("%s must be an integer, got %s" % (name, type(n).__name__))
    if not 0 <= n <= _INT64_MAX:
        raise ValueError("%s must be in [0, 2^63 - 1], got %d" % (name, n))
    return n


_FLOAT_PARAMS = {PARAM_TEMPERATURE, PARAM_ALPHA, PARAM_SOFT_WEIGHT, PARAM_HARD_WEIGHT,
                 PARAM_JSD_BETA, PARAM_LABEL_SMOOTHING, PARAM_LABEL_WEIGHT, PARAM_THRESHOLD,
                 PARAM_ETA_PRIME}


def param_bounds(kind, param):
    """kd_loss_param_bounds(): (lo, hi, is_open_low) of a parameter for a kind."""
    lo, hi, open_low = ctypes.c_double(), ctypes.c_double(), ctypes.c_int32()
    st = lib.kd_loss_param_bounds(kind, param, ctypes.byref(lo), ctypes.byref(hi),
                                  ctypes.byref(open_low))
    raise_for_status(st, "kd_loss_param_bounds")
    return lo.value, hi.value, bool(open_low.value)


class Loss(Handle):
    """A kd_loss handle: the C API one to one, for callers who want to reuse a
    handle (no allocation per call once shapes are known) or use backward().

    Bound arrays are referenced by the object until they are rebound or the
    handle is closed, so they cannot be freed while C holds their pointers.
    Before every compute call the row count n is checked against the size of
    every bound array (matrices: rows; vectors: values; WORST_CASE's
    unlabeled matrices against KD_PARAM_UNLABELED_ROWS, default n): an n
    larger than an array raises ValueError naming it, before C is called, so
    no call reads or writes past a NumPy array.  Use one Loss from one thread
    at a time.
    """

    _prefix = "kd_loss"
    _closed_message = "the Loss handle is closed"

    def __init__(self, kind, num_classes):
        h = kd_loss_p()
        st = lib.kd_loss_create(ctypes.byref(h), int(kind), int(num_classes))
        self._adopt(st, h, "kind %r, num_classes %r" % (kind, num_classes))
        self._keep = {}
        self._rows = {}          # role -> (rows or values of the bound array, its name)
        self._reduction = REDUCTION_MEAN
        self._unlabeled_rows = -1
        self.num_classes = int(num_classes)
        self.kind = int(kind)

    # -- life cycle --
    def close(self):
        """Destroy the handle (kd_loss_destroy); idempotent."""
        self._destroy()
        self._keep = {}
        self._rows = {}

    def _release(self):
        """Drop the references to the bound arrays (the cached handles of the
        functional API, which rebind every role before each compute call)."""
        self._keep = {}
        self._rows = {}

    # -- parameters --
    def set(self, param, value):
        """Set a parameter: kd_loss_set_float for real parameters, else kd_loss_set_int."""
        if param in _FLOAT_PARAMS:
            self.set_float(param, value)
        else:
            self.set_int(param, value)
        return self

    def set_int(self, param, value):
        Handle._set_int(self, param, value)
        if param == PARAM_REDUCTION:       # mirrored: the size checks and buffers need them
            self._reduction = int(value)
        elif param == PARAM_UNLABELED_ROWS:
            self._unlabeled_rows = int(value)

    set_float = Handle._set_float
    get_int = Handle._get_int
    get_float = Handle._get_float

    def get(self, param):
        return self.get_float(param) if param in _FLOAT_PARAMS else self.get_int(param)

    # -- bindings --
    def bind_matrix(self, role, a, name=None):
        """Bind an input matrix (None unbinds)."""
        name = name or _ROLE_NAMES.get(role, "role %r" % (role,))
        if a is None:
            self._check(lib.kd_loss_bind_matrix(self._handle(), role, None, 0), "kd_loss_bind_matrix")
            self._bound(role, None)
            return
        a, ld = A.matrix(a, name, ncols=self.num_classes)
        self._check(lib.kd_loss_bind_matrix(self._handle(), role, A.fptr(a), ld), "kd_loss_bind_matrix")
        self._bound(role, a, a.shape[0], name)

    def _bound(self, role, keep, size=None, name=None):
        """Record a successful binding (C keeps the old one when a bind fails)."""
        if keep is None:
            self._keep.pop(role, None)
            self._rows.pop(role, None)
        else:
            self._keep[role] = keep
            if size is not None:
                self._rows[role] = (int(size), name or _ROLE_NAMES.get(role, "array"))
            else:
                self._rows.pop(role, None)

    def bind_teachers(self, teachers, weights=None, name="teacher"):
        """Bind several teacher logit matrices (averaged, optionally weighted)."""
        if not teachers:
            self._check(lib.kd_loss_bind_teachers(self._handle(), 0, None, None, None),
                        "kd_loss_bind_teachers")
            self._bound(ARG_TEACHER, None)
            return
        mats, lds = [], []
        for k, t in enumerate(teachers):
            t, ld = A.matrix(t, "%s[%d]" % (name, k), ncols=self.num_classes)
            mats.append(t)
            lds.append(ld)
        if weights is not None:
            weights = A.float_vector(weights, "teacher_weights", len(mats), copy_lists=True)
        self._check(lib.kd_loss_bind_teachers(self._handle(), len(mats), A.pointer_array(mats),
                                              A.int64_array(lds), A.fptr(weights)),
                    "kd_loss_bind_teachers")
        k = min(range(len(mats)), key=lambda i: mats[i].shape[0])
        self._bound(ARG_TEACHER, (mats, weights), mats[k].shape[0], "%s[%d]" % (name, k))

    def bind_labels(self, labels, n=None):
        if labels is None:
            self._check(lib.kd_loss_bind_labels(self._handle(), None), "kd_loss_bind_labels")
            self._bound(ARG_LABELS, None)
            return
        if isinstance(labels, np.ndarray) and labels.dtype == np.int64:
            # int64 (torch's label dtype) is read in place by libkd: no int32
            # copy; a value beyond int32 is refused by the compute call
            labels = A.int_vector(labels, "labels", n, np.int64)
            self._check(lib.kd_loss_bind_labels64(self._handle(), A.i64ptr(labels)),
                        "kd_loss_bind_labels64")
        else:
            labels = A.int_vector(labels, "labels", n)
            self._check(lib.kd_loss_bind_labels(self._handle(), A.i32ptr(labels)),
                        "kd_loss_bind_labels")
        self._bound(ARG_LABELS, labels, labels.shape[0], "labels")

    def bind_weights(self, weights, n=None, name="weights"):
        if weights is None:
            self._check(lib.kd_loss_bind_weights(self._handle(), None), "kd_loss_bind_weights")
            self._bound(ARG_WEIGHTS, None)
            return
        weights = A.float_vector(weights, name, n)
        self._check(lib.kd_loss_bind_weights(self._handle(), A.fptr(weights)), "kd_loss_bind_weights")
        self._bound(ARG_WEIGHTS, weights, weights.shape[0], name)

    def bind_vector(self, role, v, length=None, name=None):
        """Bind an input float vector: KD_ARG_CLASS_THRESHOLDS, KD_ARG_CLASS_PROBS,
        KD_ARG_LABEL_HISTOGRAM (exactly C values) or KD_ARG_WEIGHTS (at least n
        values at compute time)."""
        name = name or _ROLE_NAMES.get(role, "role %r" % (role,))
        per_class = role in _CLASS_VECTORS
        if v is not None:
            if per_class:
                length = self.num_classes
            v = A.float_vector(v, name, length, copy_lists=per_class)
        self._check(lib.kd_loss_bind_vector(self._handle(), role, A.fptr(v)), "kd_loss_bind_vector")
        self._bound(role, v, None if v is None or per_class else v.shape[0], name)

    def bind_output(self, role, out, name=None):
        """Bind an output matrix or float vector (None unbinds)."""
        name = name or _ROLE_NAMES.get(role, "role %r" % (role,))
        ld = 0
        if out is not None:
            if role in _MATRIX_OUTPUTS:
                out, ld = A.matrix(out, name, ncols=self.num_classes)
            elif role in _VECTOR_OUTPUTS:
                out = A.float_vector(out, name, None)
            else:
                raise ValueError("bind_output: role %r is not an output role (grad_student, "
                                 "per_sample, mask, grad_teacher, grad_*_adv)" % (role,))
            if not out.flags.writeable:
                raise ValueError("%s must be writeable" % name)
        self._check(lib.kd_loss_bind_output(self._handle(), role, A.fptr(out), ld), "kd_loss_bind_output")
        self._bound(role, out, None if out is None else out.shape[0], name)

    def bind_output_labels(self, role, out, name="pseudo_labels"):
        if out is not None:
            if not isinstance(out, np.ndarray) or out.dtype != np.int32 or out.ndim != 1 \
                    or not out.flags.c_contiguous or not out.flags.writeable:
                raise TypeError("%s must be a writeable contiguous 1-D int32 numpy array" % name)
        self._check(lib.kd_loss_bind_output_labels(self._handle(), role, A.i32ptr(out)),
                    "kd_loss_bind_output_labels")
        self._bound(role, out, None if out is None else out.shape[0], name)

    # -- compute --
    def check_rows(self, n, function="forward"):
        """n as an int, after checking it against every bound array: raises
        ValueError when an array has fewer rows (values) than the call would
        read or write.  Every compute method calls it before C."""
        n = count_arg(n)
        nu = n
        if self._unlabeled_rows >= 0 and self._rows.keys() & _UNLABELED_ROLES:
            nu = self._unlabeled_rows
        for role, (size, name) in self._rows.items():
            need = nu if role in _UNLABELED_ROLES else n
            if size < need:
                raise ValueError("%s(n=%d): the bound %s has %d %s, fewer than the %d the call "
                                 "would access%s" % (function, n, name, size,
                                 "values" if role not in _MATRIX_INPUTS | _MATRIX_OUTPUTS else "rows",
                                 need, " (KD_PARAM_UNLABELED_ROWS)"
                                 if role in _UNLABELED_ROLES and nu != n else ""))
        return n

    def _loss_buffer(self, n, out):
        count = n if self._reduction == REDUCTION_NONE else 1
        if out is None:
            return np.zeros(count, np.float32)
        out = A.float_vector(out, "loss", None)
        if out.shape[0] < count:
            raise ValueError("loss buffer needs %d values, got %d" % (count, out.shape[0]))
        if not out.flags.writeable:
            raise ValueError("loss buffer must be writeable")
        return out

    def forward(self, n, out=None):
        """kd_loss_forward: returns a float32 array (1 value, or n for NONE)."""
        n = self.check_rows(n, "forward")
        buf = self._loss_buffer(n, out)
        self._check(lib.kd_loss_forward(self._handle(), n, A.fptr(buf)), "kd_loss_forward")
        return buf

    def forward_backward(self, n, out=None):
        """kd_loss_forward_backward: loss values; gradients go to the bound outputs."""
        n = self.check_rows(n, "forward_backward")
        buf = self._loss_buffer(n, out)
        self._check(lib.kd_loss_forward_backward(self._handle(), n, A.fptr(buf)),
                    "kd_loss_forward_backward")
        return buf

    def backward(self, n, upstream=1.0):
        """kd_loss_backward with the upstream gradient (a scalar for MEAN/SUM,
        n values for NONE)."""
        n = self.check_rows(n, "backward")
        if np.ndim(upstream) == 0:
            up = np.array([upstream], np.float32)
        else:
            up = A.float_vector(np.asarray(upstream, np.float32), "upstream", None)
        need = n if self._reduction == REDUCTION_NONE else 1
        if up.shape[0] != need:
            raise ValueError("upstream must have %d values, got %d" % (need, up.shape[0]))
        self._check(lib.kd_loss_backward(self._handle(), n, A.fptr(up)), "kd_loss_backward")

    # -- split batch statistics (data-parallel CLASS_BALANCE and MCC) --
    def stats_size(self):
        """kd_loss_stats_size: doubles in the statistics buffer (C + 1 or C*C + 2)."""
        require("kd_loss_stats_size")
        v = ctypes.c_int64()
        self._check(lib.kd_loss_stats_size(self._handle(), ctypes.byref(v)), "kd_loss_stats_size")
        return v.value

    def local_stats(self, n):
        """kd_loss_local_stats: this rank's float64 statistics over its n rows
        of the bound student; all-reduce them with SUM, then call finish()."""
        require("kd_loss_local_stats")
        n = self.check_rows(n, "local_stats")
        stats = np.zeros(self.stats_size(), np.float64)
        self._check(lib.kd_loss_local_stats(self._handle(), n, stats.ctypes.data_as(c_double_p)),
                    "kd_loss_local_stats")
        return stats

    def finish(self, n, global_stats):
        """kd_loss_finish: the global loss from the summed statistics (and this
        rank's rows of the gradient into the bound KD_ARG_GRAD_STUDENT)."""
        require("kd_loss_finish")
        n = self.check_rows(n, "finish")
        g = np.ascontiguousarray(global_stats, dtype=np.float64)
        if g.ndim != 1 or g.shape[0] != self.stats_size():
            raise ValueError("global_stats must have %d values" % self.stats_size())
        loss = np.zeros(1, np.float32)
        self._check(lib.kd_loss_finish(self._handle(), n, g.ctypes.data_as(c_double_p), A.fptr(loss)),
                    "kd_loss_finish")
        return float(loss[0])


class LossResult:
    """What a functional loss returns.

    loss          float (mean / sum) or float32 ndarray of n values (reduction "none")
    grad_student  d loss / d student (n x C float32), None when compute_grad=False
    other fields  per loss: grad_teacher, mask, pseudo_labels, grad_y_l_adv, ...
    """

    def __init__(self, **fields):
        self.__dict__.update(fields)

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)
        raise AttributeError("this loss result has no field %r (fields: %s)"
                             % (name, ", ".join(sorted(self.__dict__))))

    def __repr__(self):
        parts = []
        for k, v in self.__dict__.items():
            parts.append("%s=%s" % (k, "array%s" % (v.shape,) if isinstance(v, np.ndarray) else repr(v)))
        return "LossResult(%s)" % ", ".join(parts)


# ---- option parsing ----

def _choice(value, name, table):
    if isinstance(value, str):
        key = value.lower().replace("-", "_")
        if key in table:
            return table[key]
    raise ValueError("%s must be one of %s, got %r" % (name, ", ".join(repr(k) for k in table), value))


_REDUCTIONS = {"mean": REDUCTION_MEAN, "sum": REDUCTION_SUM, "none": REDUCTION_NONE}
_KL_REDUCTIONS = {"batchmean": REDUCTION_MEAN, "sum": REDUCTION_SUM, "none": REDUCTION_NONE}
_SMOOTHING = {"uniform": SMOOTHING_UNIFORM, "others": SMOOTHING_OTHERS}
_DIVERGENCES = {"forward_kl": DIVERGENCE_FORWARD_KL, "kl": DIVERGENCE_FORWARD_KL,
                "reverse_kl": DIVERGENCE_REVERSE_KL, "jsd": DIVERGENCE_JSD}
_NORMALIZATIONS = {"batch": NORMALIZE_BATCH, "valid": NORMALIZE_VALID}
_DISTANCES = {"l2": DISTANCE_L2, "kl": DISTANCE_KL, "js": DISTANCE_JS}
_INPUTS = {"logits": INPUT_LOGITS, "probabilities": INPUT_PROBABILITIES, "probs": INPUT_PROBABILITIES}


class _Config:
    """The configuration of one functional call, recorded instead of applied:
    parameters (set once, when a handle for this configuration is created)
    and bindings (applied to that handle on every call).  Handles are cached
    per thread and configuration (the key holds the kind, C, every parameter
    value and which roles are bound), so a repeated call with the same
    options costs the bindings and the compute call only, no kd_loss_create
    and no parameter calls.  A cached handle is private to this module and
    is rebound in full before every compute call: it never reads an array of
    an earlier call."""

    __slots__ = ("kind", "c", "_reduction", "params", "binds", "tags")

    def __init__(self, kind, c, reduction, threads, check_finite):
        self.kind, self.c, self._reduction = kind, c, reduction
        self.params = [(PARAM_REDUCTION, int(reduction)), (PARAM_THREADS, int(threads)),
                       (PARAM_CHECK_FINITE, 1 if check_finite else 0)]
        self.binds = []
        self.tags = []

    def set_int(self, param, value):
        self.params.append((param, int(value)))

    def set_float(self, param, value):
        self.params.append((param, float(value)))

    def get_int(self, param):
        if param == PARAM_REDUCTION:
            return self._reduction
        raise KeyError(param)

    def _bind(self, method, tag, *args):
        self.binds.append((method, args))
        self.tags.append(tag)

    def bind_matrix(self, role, a, name=None):
        self._bind(Loss.bind_matrix, role, role, a, name)

    def bind_teachers(self, teachers, weights=None, name="teacher"):
        self._bind(Loss.bind_teachers, (ARG_TEACHER, len(teachers), weights is not None),
                   teachers, weights, name)

    def bind_labels(self, labels, n=None):
        self._bind(Loss.bind_labels, ARG_LABELS, labels, n)

    def bind_weights(self, weights, n=None, name="weights"):
        self._bind(Loss.bind_weights, ARG_WEIGHTS, weights, n, name)

    def bind_vector(self, role, v, length=None, name=None):
        self._bind(Loss.bind_vector, role, role, v, length, name)

    def bind_output(self, role, out, name=None):
        self._bind(Loss.bind_output, role, role, out, name)

    def bind_output_labels(self, role, out, name="pseudo_labels"):
        self._bind(Loss.bind_output_labels, role, role, out, name)

    def _key(self):
        return (self.kind, self.c, tuple(self.params), tuple(self.tags))

    def handle(self):
        """The cached (or a new) handle of this configuration, with every binding applied."""
        cache = _handle_cache()
        key = self._key()
        h = cache.pop(key, None)
        if h is None:
            h = Loss(self.kind, self.c)
            try:
                for param, value in self.params:
                    if isinstance(value, float):
                        h.set_float(param, value)
                    else:
                        h.set_int(param, value)
            except Exception:
                h.close()
                raise
            while len(cache) >= _CACHE_SIZE:
                cache.pop(next(iter(cache))).close()     # the least recently used
        cache[key] = h                                   # most recently used last
        try:
            for method, args in self.binds:
                method(h, *args)
        except Exception:
            h._release()
            raise
        return h


_CACHE_SIZE = 32
_tls = threading.local()


def _handle_cache():
    """This thread's handles by configuration (a handle is used by one thread only)."""
    cache = getattr(_tls, "handles", None)
    if cache is None:
        cache = _tls.handles = collections.OrderedDict()
    return cache


def clear_handle_cache():
    """Close this thread's cached handles of the functional API."""
    cache = _handle_cache()
    while cache:
        cache.popitem()[1].close()


def _new(kind, c, reduction, threads, check_finite):
    return _Config(kind, c, reduction, threads, check_finite)


def _student(student, name="student"):
    student, _ = A.matrix(student, name)
    return student, student.shape[0], student.shape[1]


def _bind_teacher(h, teacher, n, c, teacher_weights, name="teacher"):
    if isinstance(teacher, (list, tuple)):
        if len(teacher) == 0:
            raise ValueError("%s: an empty list of teachers" % name)
        for k, t in enumerate(teacher):
            A.matrix(t, "%s[%d]" % (name, k), shape=(n, c))
        h.bind_teachers(list(teacher), teacher_weights, name)
    else:
        if teacher_weights is not None:
            raise ValueError("teacher_weights needs a list of teachers")
        A.matrix(teacher, name, shape=(n, c))
        h.bind_matrix(ARG_TEACHER, teacher, name)


def _run(cfg, n, compute_grad, result, outputs):
    """Bind the gradient outputs (name -> (role, shape)), compute, fill result."""
    if compute_grad:
        for field, (role, shape) in outputs.items():
            g = np.empty(shape, np.float32)
            cfg.bind_output(role, g, field)
            result[field] = g
    else:
        for field in outputs:
            result[field] = None
    h = cfg.handle()
    try:
        value = h.forward_backward(n) if compute_grad else h.forward(n)
    finally:
        h._release()
    result["loss"] = value if cfg._reduction == REDUCTION_NONE else float(value[0])
    return LossResult(**result)


def _common(h, weights, n, ignore_index=None):
    if weights is not None:
        h.bind_weights(weights, n)
    if ignore_index is not None:
        h.set_int(PARAM_IGNORE_INDEX, ignore_index)


# ---- the functional API ----

def cross_entropy(student, labels, label_smoothing=0.0, ignore_index=-100, reduction="mean", *,
                  smoothing_mode="uniform", weights=None, threads=1, check_finite=False,
                  compute_grad=True):
    """Cross-entropy with hard labels: F.cross_entropy(student, labels,
    ignore_index=, label_smoothing=, reduction=) (KD_LOSS_CROSS_ENTROPY).

    weights: optional n per-sample weights >= 0 (never change the mean's
    denominator).  Returns LossResult(loss, grad_student)."""
    student, n, c = _student(student)
    red = _choice(reduction, "reduction", _REDUCTIONS)
    h = _new(CROSS_ENTROPY, c, red, threads, check_finite)
    h.bind_matrix(ARG_STUDENT, student, "student")
    h.bind_labels(labels, n)
    h.set_float(PARAM_LABEL_SMOOTHING, label_smoothing)
    h.set_int(PARAM_SMOOTHING_MODE, _choice(smoothing_mode, "smoothing_mode", _SMOOTHING))
    _common(h, weights, n, ignore_index)
    return _run(h, n, compute_grad, {}, {"grad_student": (ARG_GRAD_STUDENT, (n, c))})


def soft_cross_entropy(student, target_probs=None, reduction="mean", *, teacher=None,
                       temperature=1.0, teacher_weights=None, labels=None, label_weight=0.7,
                       label_smoothing=0.0, smoothing_mode="uniform", ignore_index=-100,
                       weights=None, threads=1, check_finite=False, compute_grad=True):
    """Soft-target cross-entropy -sum_c q_c log softmax(student)_c.

    q = target_probs (n x C probabilities, used as given), or
    softmax(teacher / temperature) when teacher= (logits; a list is averaged)
    is given instead; with labels= the target becomes
    label_weight * onehot_eps(y) + (1 - label_weight) * q (soft labels).
    Returns LossResult(loss, grad_student)."""
    student, n, c = _student(student)
    red = _choice(reduction, "reduction", _REDUCTIONS)
    if (target_probs is None) == (teacher is None):
        raise ValueError("give exactly one of target_probs and teacher")
    h = _new(CROSS_ENTROPY, c, red, threads, check_finite)
    h.bind_matrix(ARG_STUDENT, student, "student")
    if target_probs is not None:
        A.matrix(target_probs, "target_probs", shape=(n, c))
        h.bind_matrix(ARG_TARGET, target_probs, "target_probs")
    else:
        _bind_teacher(h, teacher, n, c, teacher_weights)
        h.set_float(PARAM_TEMPERATURE, temperature)
    if labels is not None:
        h.bind_labels(labels, n)
        h.set_float(PARAM_LABEL_WEIGHT, label_weight)
        h.set_float(PARAM_LABEL_SMOOTHING, label_smoothing)
        h.set_int(PARAM_SMOOTHING_MODE, _choice(smoothing_mode, "smoothing_mode", _SMOOTHING))
    _common(h, weights, n, ignore_index)
    return _run(h, n, compute_grad, {}, {"grad_student": (ARG_GRAD_STUDENT, (n, c))})


def _distill_weights(h, alpha, soft_weight, hard_weight):
    if alpha is not None:
        h.set_float(PARAM_ALPHA, alpha)
    if soft_weight is not None:
        h.set_float(PARAM_SOFT_WEIGHT, soft_weight)
    if hard_weight is not None:
        h.set_float(PARAM_HARD_WEIGHT, hard_weight)


def kl_distill(student, teacher, labels=None, temperature=1.0, alpha=1.0, reduction="batchmean", *,
               teacher_weights=None, soft_weight=None, hard_weight=None, t2_scaling=True,
               divergence="forward_kl", jsd_beta=0.5, normalization="batch", label_smoothing=0.0,
               smoothing_mode="uniform", ignore_index=-100, weights=None, threads=1,
               check_finite=False, compute_grad=True):
    """Hinton distillation (KD_LOSS_KL_DISTILL):
    alpha * T^2 * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y).

    teacher: n x C logits, or a list of them (averaged in logit space, with
    teacher_weights if given).  Without labels the hard term is absent and the
    soft term keeps weight alpha (C semantics).  soft_weight / hard_weight
    override alpha's split.  reduction: "batchmean" (soft term / n, hard term /
    non-ignored rows; normalization="valid" divides the soft term by the
    non-ignored rows too), "sum", "none".  divergence: "forward_kl",
    "reverse_kl", "jsd" (with jsd_beta).  The teacher gets no gradient.
    Returns LossResult(loss, grad_student)."""
    student, n, c = _student(student)
    red = _choice(reduction, "reduction", _KL_REDUCTIONS)
    h = _new(KL_DISTILL, c, red, threads, check_finite)
    h.bind_matrix(ARG_STUDENT, student, "student")
    _bind_teacher(h, teacher, n, c, teacher_weights)
    if labels is not None:
        h.bind_labels(labels, n)
    _kl_options(h, temperature, alpha, soft_weight, hard_weight, t2_scaling, divergence, jsd_beta,
                normalization, label_smoothing)
    h.set_int(PARAM_SMOOTHING_MODE, _choice(smoothing_mode, "smoothing_mode", _SMOOTHING))
    _common(h, weights, n, ignore_index)
    return _run(h, n, compute_grad, {}, {"grad_student": (ARG_GRAD_STUDENT, (n, c))})


def _kl_options(h, temperature, alpha, soft_weight, hard_weight, t2_scaling, divergence, jsd_beta,
                normalization, label_smoothing):
    """The KL_DISTILL parameters shared by kl_distill and linear_kl_distill."""
    h.set_float(PARAM_TEMPERATURE, temperature)
    _distill_weights(h, alpha, soft_weight, hard_weight)
    h.set_int(PARAM_T2_SCALING, 1 if t2_scaling else 0)
    h.set_int(PARAM_DIVERGENCE, _choice(divergence, "divergence", _DIVERGENCES))
    h.set_float(PARAM_JSD_BETA, jsd_beta)
    h.set_int(PARAM_NORMALIZATION, _choice(normalization, "normalization", _NORMALIZATIONS))
    h.set_float(PARAM_LABEL_SMOOTHING, label_smoothing)


def logit_mse(student, teacher, reduction="mean", *, labels=None, alpha=None, soft_weight=None,
              hard_weight=None, teacher_weights=None, normalization="batch", label_smoothing=0.0,
              smoothing_mode="uniform", ignore_index=-100, weights=None, threads=1,
              check_finite=False, compute_grad=True):
    """Logit matching (KD_LOSS_LOGIT_MSE): F.mse_loss(student, teacher) for
    "mean" (over all n*C elements); "sum" adds the per-row means (= PyTorch's
    sum / C); "none" gives the per-row means.  With labels and alpha:
    alpha * MSE + (1 - alpha) * CE.  Returns LossResult(loss, grad_student)."""
    student, n, c = _student(student)
    red = _choice(reduction, "reduction", _REDUCTIONS)
    h = _new(LOGIT_MSE, c, red, threads, check_finite)
    h.bind_matrix(ARG_STUDENT, student, "student")
    _bind_teacher(h, teacher, n, c, teacher_weights)
    if labels is not None:
        h.bind_labels(labels, n)
    _distill_weights(h, alpha, soft_weight, hard_weight)
    h.set_int(PARAM_NORMALIZATION, _choice(normalization, "normalization", _NORMALIZATIONS))
    h.set_float(PARAM_LABEL_SMOOTHING, label_smoothing)
    h.set_int(PARAM_SMOOTHING_MODE, _choice(smoothing_mode, "smoothing_mode", _SMOOTHING))
    _common(h, weights, n, ignore_index)
    return _run(h, n, compute_grad, {}, {"grad_student": (ARG_GRAD_STUDENT, (n, c))})


def _thresholding(h, n, c, threshold, class_thresholds, inclusive):
    h.set_float(PARAM_THRESHOLD, threshold)
    h.set_int(PARAM_THRESHOLD_MODE, THRESHOLD_INCLUSIVE if inclusive else THRESHOLD_STRICT)
    if class_thresholds is not None:
        h.bind_vector(ARG_CLASS_THRESHOLDS, class_thresholds, c, "class_thresholds")
    mask = np.empty(n, np.float32)
    labels = np.empty(n, np.int32)
    h.bind_output(ARG_MASK, mask, "mask")
    h.bind_output_labels(ARG_PSEUDO_LABELS, labels)
    return {"mask": mask, "pseudo_labels": labels}


def pseudo_label(student, teacher, threshold=0.95, class_thresholds=None, *, inclusive=False,
                 reduction="mean", teacher_weights=None, weights=None, threads=1,
                 check_finite=False, compute_grad=True):
    """Confidence-thresholded pseudo-label loss (tllib
    ConfidenceBasedSelfTrainingLoss): mean_i m_i * CE(s_i, argmax t_i),
    m_i = [max softmax(t_i) > tau] (>= with inclusive=True), tau = threshold or
    class_thresholds[pseudo-label] (C values, e.g. FlexMatch).
    Returns LossResult(loss, grad_student, mask (float32 0/1), pseudo_labels (int32))."""
    student, n, c = _student(student)
    red = _choice(reduction, "reduction", _REDUCTIONS)
    h = _new(PSEUDO_LABEL, c, red, threads, check_finite)
    h.bind_matrix(ARG_STUDENT, student, "student")
    _bind_teacher(h, teacher, n, c, teacher_weights)
    extra = _thresholding(h, n, c, threshold, class_thresholds, inclusive)
    _common(h, weights, n)
    return _run(h, n, compute_grad, extra, {"grad_student": (ARG_GRAD_STUDENT, (n, c))})


def strong_weak_consistency(strong, weak, threshold=0.7, temperature=0.85, *, inclusive=False,
                            class_thresholds=None, reduction="mean", weights=None, threads=1,
                            check_finite=False, compute_grad=True):
    """UDA consistency (tllib StrongWeakConsistencyLoss):
    sum_i m_i KL(softmax(weak_i) || softmax(strong_i / T)) / max(sum_i m_i, 1),
    m_i = [max softmax(weak_i) > threshold].  The weak view gets no gradient.
    Returns LossResult(loss, grad_student (= d/d strong), mask, pseudo_labels)."""
    strong, n, c = _student(strong, "strong")
    red = _choice(reduction, "reduction", _REDUCTIONS)
    h = _new(STRONG_WEAK, c, red, threads, check_finite)
    h.bind_matrix(ARG_STUDENT, strong, "strong")
    _bind_teacher(h, weak, n, c, None, "weak")
    h.set_float(PARAM_TEMPERATURE, temperature)
    extra = _thresholding(h, n, c, threshold, class_thresholds, inclusive)
    _common(h, weights, n)
    return _run(h, n, compute_grad, extra, {"grad_student": (ARG_GRAD_STUDENT, (n, c))})


def consistency(p1, p2, distance="l2", inputs="logits", mask=None, reduction="mean", *,
                threads=1, check_finite=False, compute_grad=True):
    """Pi-model consistency (tllib ConsistencyLoss): mask_i * D(p1_i, p2_i),
    D = "l2" (sum_c (p1 - p2)^2), "kl" (KL(p2 || p1)) or "js"; inputs are
    "logits" (softmax inside) or "probabilities".  Both inputs get a gradient.
    Returns LossResult(loss, grad_student (d/d p1), grad_teacher (d/d p2));
    grad_p1 / grad_p2 are the same arrays."""
    p1, n, c = _student(p1, "p1")
    A.matrix(p2, "p2", shape=(n, c))
    red = _choice(reduction, "reduction", _REDUCTIONS)
    h = _new(CONSISTENCY, c, red, threads, check_finite)
    h.bind_matrix(ARG_STUDENT, p1, "p1")
    h.bind_matrix(ARG_TEACHER, p2, "p2")
    h.set_int(PARAM_DISTANCE, _choice(distance, "distance", _DISTANCES))
    h.set_int(PARAM_INPUT_TYPE, _choice(inputs, "inputs", _INPUTS))
    if mask is not None:
        h.bind_weights(mask, n, "mask")
    r = _run(h, n, compute_grad, {}, {"grad_student": (ARG_GRAD_STUDENT, (n, c)),
                                      "grad_teacher": (ARG_GRAD_TEACHER, (n, c))})
    r.grad_p1, r.grad_p2 = r.grad_student, r.grad_teacher
    return r


def _input_kind(inputs, function):
    if inputs is None:
        raise TypeError("%s: say what the rows are: inputs='logits' (softmax inside) or "
                        "inputs='probabilities' (used as given, as tllib's ClassBalanceLoss "
                        "takes them); there is no default, so tllib-style code cannot silently "
                        "get the other loss" % function)
    return _choice(inputs, "inputs", _INPUTS)


def class_balance(logits, inputs=None, *, threads=1, check_finite=False, compute_grad=True):
    """tllib ClassBalanceLoss: mean_c BCE(mean_i p_ic, 1/C) (PyTorch BCE, log
    clamped at -100); p = softmax(rows) for inputs="logits", the rows
    themselves for inputs="probabilities" (tllib's module takes
    probabilities).  inputs is required: TypeError without it.
    Returns LossResult(loss (float), grad_student)."""
    kind = _input_kind(inputs, "class_balance")
    logits, n, c = _student(logits, "logits")
    h = _new(CLASS_BALANCE, c, REDUCTION_MEAN, threads, check_finite)
    h.bind_matrix(ARG_STUDENT, logits, "logits")
    h.set_int(PARAM_INPUT_TYPE, kind)
    return _run(h, n, compute_grad, {}, {"grad_student": (ARG_GRAD_STUDENT, (n, c))})


def mcc(logits, temperature=2.5, *, threads=1, check_finite=False, compute_grad=True):
    """tllib MinimumClassConfusionLoss at temperature T (a class with zero
    probability mass contributes 0 instead of tllib's NaN).
    Returns LossResult(loss (float), grad_student)."""
    logits, n, c = _student(logits, "logits")
    h = _new(MCC, c, REDUCTION_MEAN, threads, check_finite)
    h.bind_matrix(ARG_STUDENT, logits, "logits")
    h.set_float(PARAM_TEMPERATURE, temperature)
    return _run(h, n, compute_grad, {}, {"grad_student": (ARG_GRAD_STUDENT, (n, c))})


def entropy(logits, temperature=1.0, weights=None, reduction="mean", *, threads=1,
            check_finite=False, compute_grad=True):
    """Entropy minimisation (Grandvalet & Bengio 2005): H(softmax(logits / T))
    per row, -sum_c p_c log p_c, scaled by weights (e.g. a confidence mask),
    "mean" over all n rows, "sum" or "none".  Takes logits: tllib's
    entropy(predictions, reduction) takes probabilities (default "none"), so
    tllib's entropy(F.softmax(y, 1), "mean") is kdlib.entropy(y) up to
    tllib's log(p + 1e-5) (a difference below C * 1e-5; 0 log 0 = 0 here).
    Returns LossResult(loss, grad_student)."""
    logits, n, c = _student(logits, "logits")
    red = _choice(reduction, "reduction", _REDUCTIONS)
    h = _new(ENTROPY, c, red, threads, check_finite)
    h.bind_matrix(ARG_STUDENT, logits, "logits")
    h.set_float(PARAM_TEMPERATURE, temperature)
    _common(h, weights, n)
    return _run(h, n, compute_grad, {}, {"grad_student": (ARG_GRAD_STUDENT, (n, c))})


def fairness(logits, class_probs, label_hist, mask=None, *, threads=1, check_finite=False,
             compute_grad=True):
    """FreeMatch's self-adaptive fairness loss (USB's entropy_loss(mask,
    logits_s, p_model, label_hist)[0]): over the rows with mask > 0 (None:
    every row), sum_c q_c log(m_c + 1e-12) with q = normalize(class_probs /
    label_hist) and m = normalize(mean(softmax(logits)) / hist(argmax)), 1/0
    taken as 0; the scalers carry no gradient.  The value is <= 0 and is what
    USB adds to its loss times lambda_e (ent_loss_ratio): minimise it as
    given.  class_probs and label_hist are FreeMatch's p_model and label_hist
    (Thresholds("freematch").state("class_probs") / .state("label_histogram")),
    C values each.  A 0/1 mask is USB's mask.bool(); a weight w > 0 counts its row w
    times (USB's .bool() would count it once: pass mask > 0 for that).  No
    selected row gives 0 and a zero gradient (USB skips the term).
    Returns LossResult(loss (float), grad_student)."""
    logits, n, c = _student(logits, "logits")
    h = _new(FAIRNESS, c, REDUCTION_MEAN, threads, check_finite)
    h.bind_matrix(ARG_STUDENT, logits, "logits")
    h.bind_vector(ARG_CLASS_PROBS, class_probs, c, "class_probs")
    h.bind_vector(ARG_LABEL_HISTOGRAM, label_hist, c, "label_hist")
    _common(h, mask, n)
    return _run(h, n, compute_grad, {}, {"grad_student": (ARG_GRAD_STUDENT, (n, c))})


def worst_case_estimation(y_l, y_l_adv, y_u, y_u_adv, eta_prime=2.0, reduction="mean", *,
                          threads=1, check_finite=False, compute_grad=True):
    """DST WorstCaseEstimationLoss (tllib):
    eta' * mean_i CE(y_l_adv_i, argmax y_l_i)
      + mean_u -log(min(1 - softmax(y_u_adv_u)[argmax y_u_u] + 1e-6, 1)).
    y_l / y_l_adv: n_l x C; y_u / y_u_adv: n_u x C.  reduction "mean" or "sum".
    The main heads y_l, y_u only give argmax labels (no gradient).
    Returns LossResult(loss, grad_y_l_adv, grad_y_u_adv)."""
    y_l, nl, c = _student(y_l, "y_l")
    A.matrix(y_l_adv, "y_l_adv", shape=(nl, c))
    y_u, _ = A.matrix(y_u, "y_u", ncols=c)
    nu = y_u.shape[0]
    A.matrix(y_u_adv, "y_u_adv", shape=(nu, c))
    red = _choice(reduction, "reduction", {"mean": REDUCTION_MEAN, "sum": REDUCTION_SUM})
    h = _new(WORST_CASE, c, red, threads, check_finite)
    h.bind_matrix(ARG_LABELED_MAIN, y_l, "y_l")
    h.bind_matrix(ARG_LABELED_ADV, y_l_adv, "y_l_adv")
    h.bind_matrix(ARG_UNLABELED_MAIN, y_u, "y_u")
    h.bind_matrix(ARG_UNLABELED_ADV, y_u_adv, "y_u_adv")
    h.set_int(PARAM_UNLABELED_ROWS, nu)
    h.set_float(PARAM_ETA_PRIME, eta_prime)
    return _run(h, nl, compute_grad, {}, {"grad_y_l_adv": (ARG_GRAD_LABELED_ADV, (nl, c)),
                                          "grad_y_u_adv": (ARG_GRAD_UNLABELED_ADV, (nu, c))})
