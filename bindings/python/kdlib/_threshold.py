"""Thresholds: the kd_threshold handle family (include/kdlib/threshold.h), one
class for every pseudo-labeling threshold / weighting algorithm."""
import ctypes
import os

import numpy as np

from . import _arrays as A
from ._handle import Handle
from ._lib import lib, raise_for_status, kd_threshold_p

FLEXMATCH, FREEMATCH, SOFTMATCH, ADAMATCH, DASH, DEBIASPL = 1, 2, 3, 4, 5, 6
PARAM_THRESHOLD, PARAM_MAPPING, PARAM_WARMUP, PARAM_NON_STRICT = 1, 2, 3, 4
PARAM_NUM_SAMPLES, PARAM_NUM_CLASSES, PARAM_ALGORITHM = 5, 6, 7
PARAM_MOMENTUM, PARAM_CLIP, PARAM_N_SIGMA, PARAM_PER_CLASS, PARAM_DIST_ALIGN = 8, 9, 10, 11, 12
PARAM_USE_QUANTILE, PARAM_QUANTILE = 13, 14
PARAM_RHO_INIT, PARAM_GAMMA, PARAM_DASH_C, PARAM_RHO_MIN, PARAM_PERIOD = 15, 16, 17, 18, 19
PARAM_TEMPERATURE, PARAM_DEBIAS_TAU = 20, 21
MAPPING_LINEAR, MAPPING_CONCAVE, MAPPING_CONVEX = 0, 1, 2
STATE_CLASS_THRESHOLDS, STATE_LEARNING_EFFECT, STATE_CLASS_COUNTS = 1, 2, 3
STATE_UNUSED, STATE_PREDICTIONS = 4, 5
STATE_GLOBAL_THRESHOLD, STATE_CLASS_PROBS, STATE_LABEL_HISTOGRAM = 6, 7, 8
STATE_CONF_MEAN, STATE_CONF_VAR, STATE_CLASS_CONF_MEAN, STATE_CLASS_CONF_VAR = 9, 10, 11, 12
STATE_UPDATES, STATE_TARGET_PROBS, STATE_LABELED_CONFIDENCE, STATE_LABELED_UPDATES = 13, 14, 15, 16
STATE_RHO, STATE_RHO_UPDATES, STATE_HARD_LABEL = 17, 18, 19

_ALGORITHMS = {"flexmatch": FLEXMATCH, "freematch": FREEMATCH, "softmatch": SOFTMATCH,
               "adamatch": ADAMATCH, "dash": DASH, "debiaspl": DEBIASPL}
_MAPPINGS = {"linear": MAPPING_LINEAR, "concave": MAPPING_CONCAVE, "convex": MAPPING_CONVEX}
_MAPPING_NAMES = {v: k for k, v in _MAPPINGS.items()}


def _algorithm_key(algorithm):
    if isinstance(algorithm, str):
        if algorithm.lower() not in _ALGORITHMS:
            raise ValueError("algorithm must be one of %s, got %r"
                             % (", ".join(sorted(_ALGORITHMS)), algorithm))
        return _ALGORITHMS[algorithm.lower()]
    return int(algorithm)


def threshold_param_bounds(algorithm, param):
    """kd_threshold_param_bounds(): (lower, upper) of a settable parameter."""
    lo, hi = ctypes.c_double(), ctypes.c_double()
    raise_for_status(lib.kd_threshold_param_bounds(_algorithm_key(algorithm), int(param),
                                                   ctypes.byref(lo), ctypes.byref(hi)),
                     "kd_threshold_param_bounds")
    return lo.value, hi.value


class Thresholds(Handle):
    """The state of a threshold algorithm over an unlabeled set.

        th = Thresholds("flexmatch", num_samples, num_classes, threshold=0.95)
        w = th.weights(confidences, predictions)     # before the batch's update
        th.update(batch_indices, confidences, predictions)

    Parameters are keyword arguments of the algorithm (FlexMatch: threshold,
    mapping "convex" | "linear" | "concave", warmup, non_strict; FreeMatch:
    momentum, clip, use_quantile, quantile; SoftMatch: momentum, n_sigma, per_class, dist_align;
    AdaMatch: threshold, momentum, dist_align; Dash: rho_init, gamma, dash_c,
    rho_min, period, temperature; DebiasPL: threshold, momentum, debias_tau).
    FreeMatch and SoftMatch learn from whole probability rows:

        th = Thresholds("softmatch", num_samples, num_classes)
        th.update_probs(probs)                        # USB's order: update first
        w, pseudo = th.weights_probs(probs)

    AdaMatch also learns from the labelled batch's probabilities:

        th = Thresholds("adamatch", num_samples, num_classes)
        th.update_labeled_probs(probs_labeled)
        th.update_probs(probs)
        w, pseudo = th.weights_probs(probs)           # pseudo-labels of the aligned rows

    Dash steps its schedule on every update and masks by the loss (USB's
    order: update, then weights); DebiasPL masks with p_hat before the
    batch's update (the authors' order):

        th = Thresholds("debiaspl", num_samples, num_classes)
        w, pseudo = th.weights_probs(probs)           # adjusted argmax
        th.update_probs(probs)
        margin = th.debias_tau * np.log(th.state("class_probs"))   # + strong logits
    """

    _prefix = "kd_threshold"
    _closed_message = "the Thresholds handle is closed"

    def __init__(self, algorithm, num_samples, num_classes, **params):
        h = kd_threshold_p()
        st = lib.kd_threshold_create(ctypes.byref(h), _algorithm_key(algorithm), int(num_samples),
                                     int(num_classes))
        self._adopt(st, h)
        self.num_samples = int(num_samples)
        self.num_classes = int(num_classes)
        try:
            for name, value in params.items():
                if not isinstance(getattr(type(self), name, None), property):
                    raise TypeError("unknown parameter %r" % name)
                setattr(self, name, value)
        except Exception:
            self.close()
            raise

    @property
    def algorithm(self):
        name = lib.kd_threshold_algorithm_name(self._get_int(PARAM_ALGORITHM))
        return name.decode() if name else None

    @property
    def threshold(self):
        return self._get_float(PARAM_THRESHOLD)

    @threshold.setter
    def threshold(self, value):
        self._set_float(PARAM_THRESHOLD, value)

    @property
    def mapping(self):
        v = self._get_int(PARAM_MAPPING)
        return _MAPPING_NAMES.get(v, v)

    @mapping.setter
    def mapping(self, value):
        if isinstance(value, str):
            if value.lower() not in _MAPPINGS:
                raise ValueError("mapping must be 'linear', 'concave' or 'convex', got %r" % value)
            value = _MAPPINGS[value.lower()]
        self._set_int(PARAM_MAPPING, value)

    @property
    def warmup(self):
        return bool(self._get_int(PARAM_WARMUP))

    @warmup.setter
    def warmup(self, value):
        self._set_int(PARAM_WARMUP, 1 if value else 0)

    @property
    def non_strict(self):
        return bool(self._get_int(PARAM_NON_STRICT))

    @non_strict.setter
    def non_strict(self, value):
        self._set_int(PARAM_NON_STRICT, 1 if value else 0)

    @property
    def momentum(self):
        return self._get_float(PARAM_MOMENTUM)

    @momentum.setter
    def momentum(self, value):
        self._set_float(PARAM_MOMENTUM, value)

    @property
    def clip(self):
        return self._get_float(PARAM_CLIP)

    @clip.setter
    def clip(self, value):
        self._set_float(PARAM_CLIP, value)

    @property
    def use_quantile(self):
        return bool(self._get_int(PARAM_USE_QUANTILE))

    @use_quantile.setter
    def use_quantile(self, value):
        self._set_int(PARAM_USE_QUANTILE, 1 if value else 0)

    @property
    def quantile(self):
        return self._get_float(PARAM_QUANTILE)

    @quantile.setter
    def quantile(self, value):
        self._set_float(PARAM_QUANTILE, value)

    @property
    def n_sigma(self):
        return self._get_float(PARAM_N_SIGMA)

    @n_sigma.setter
    def n_sigma(self, value):
        self._set_float(PARAM_N_SIGMA, value)

    @property
    def per_class(self):
        return bool(self._get_int(PARAM_PER_CLASS))

    @per_class.setter
    def per_class(self, value):
        self._set_int(PARAM_PER_CLASS, 1 if value else 0)

    @property
    def dist_align(self):
        return bool(self._get_int(PARAM_DIST_ALIGN))

    @dist_align.setter
    def dist_align(self, value):
        self._set_int(PARAM_DIST_ALIGN, 1 if value else 0)

    @property
    def rho_init(self):
        return self._get_float(PARAM_RHO_INIT)

    @rho_init.setter
    def rho_init(self, value):
        self._set_float(PARAM_RHO_INIT, value)

    @property
    def gamma(self):
        return self._get_float(PARAM_GAMMA)

    @gamma.setter
    def gamma(self, value):
        self._set_float(PARAM_GAMMA, value)

    @property
    def dash_c(self):
        return self._get_float(PARAM_DASH_C)

    @dash_c.setter
    def dash_c(self, value):
        self._set_float(PARAM_DASH_C, value)

    @property
    def rho_min(self):
        return self._get_float(PARAM_RHO_MIN)

    @rho_min.setter
    def rho_min(self, value):
        self._set_float(PARAM_RHO_MIN, value)

    @property
    def period(self):
        return self._get_int(PARAM_PERIOD)

    @period.setter
    def period(self, value):
        self._set_int(PARAM_PERIOD, value)

    @property
    def temperature(self):
        return self._get_float(PARAM_TEMPERATURE)

    @temperature.setter
    def temperature(self, value):
        self._set_float(PARAM_TEMPERATURE, value)

    @property
    def debias_tau(self):
        return self._get_float(PARAM_DEBIAS_TAU)

    @debias_tau.setter
    def debias_tau(self, value):
        self._set_float(PARAM_DEBIAS_TAU, value)

    def reset(self):
        """The initial state again (parameters kept)."""
        self._check(self._c("reset")(self._handle()), self._prefix + "_reset")

    def _batch(self, confidences, predictions, n):
        confidences = A.float_vector(confidences, "confidences", n, copy_lists=True)
        n = confidences.shape[0]
        predictions = A.int_vector(predictions, "predictions", n)
        return confidences, predictions, n

    def update(self, indices, confidences, predictions):
        """Record a batch (FlexMatch: pred[indices[k]] = predictions[k] where
        confidences[k] > threshold).  indices: integers (as int64),
        confidences: floats (as float32), predictions: integers (as int32)."""
        indices = A.int_vector(indices, "indices", None, np.int64)
        confidences, predictions, n = self._batch(confidences, predictions, indices.shape[0])
        self._check(self._c("update")(self._handle(), n, A.i64ptr(indices), A.fptr(confidences),
                                      A.i32ptr(predictions)), self._prefix + "_update")

    def weights(self, confidences, predictions):
        """Per-sample loss weights of a batch from the current state (float32)."""
        confidences, predictions, n = self._batch(confidences, predictions, None)
        out = np.empty(n, np.float32)
        self._check(lib.kd_threshold_weights(self._handle(), n, A.fptr(confidences),
                                             A.i32ptr(predictions), A.fptr(out)),
                    "kd_threshold_weights")
        return out

    def update_probs(self, probs, indices=None):
        """Record a batch of probability rows (float32, n x C, rows may be
        strided).  indices: sample indices (as int64), required by FlexMatch,
        optional for FreeMatch and SoftMatch."""
        probs, ld = A.matrix(probs, "probs", ncols=self.num_classes)
        n = probs.shape[0]
        if indices is not None:
            indices = A.int_vector(indices, "indices", n, np.int64)
        self._check(lib.kd_threshold_update_probs(self._handle(), n, self.num_classes,
                                                  A.fptr(probs), ld, A.i64ptr(indices)),
                    "kd_threshold_update_probs")

    def update_labeled_probs(self, probs):
        """Record a batch of probability rows of labelled samples (float32,
        n x C, rows may be strided): AdaMatch's p_target and relative threshold."""
        probs, ld = A.matrix(probs, "probs", ncols=self.num_classes)
        self._check(lib.kd_threshold_update_labeled_probs(self._handle(), probs.shape[0],
                                                          self.num_classes, A.fptr(probs), ld),
                    "kd_threshold_update_labeled_probs")

    def weights_probs(self, probs):
        """(weights float32 of n, pseudo_labels int32 of n: each row's argmax,
        of the aligned rows for AdaMatch) of a batch of probability rows from
        the current state."""
        probs, ld = A.matrix(probs, "probs", ncols=self.num_classes)
        n = probs.shape[0]
        w = np.empty(n, np.float32)
        pl = np.empty(n, np.int32)
        self._check(lib.kd_threshold_weights_probs(self._handle(), n, self.num_classes,
                                                   A.fptr(probs), ld, A.fptr(w), A.i32ptr(pl)),
                    "kd_threshold_weights_probs")
        return w, pl

    # ---- split statistics (data-parallel training, docs/distributed.md) ----

    def stats_size(self):
        """kd_threshold_stats_size(): the number of float64 statistics of a
        rank's rows; KdError (KD_ERR_UNSUPPORTED) for FlexMatch, FreeMatch with
        use_quantile and SoftMatch with dist_align (gather the rows instead)."""
        size = ctypes.c_int64()
        self._check(lib.kd_threshold_stats_size(self._handle(), ctypes.byref(size)),
                    "kd_threshold_stats_size")
        return size.value

    def local_stats(self, probs, labeled=None):
        """This rank's statistics (float64 ndarray of stats_size()) of its
        unlabelled rows and, for AdaMatch, its labelled rows (n may be 0);
        the handle is unchanged.  Sum them over the ranks (all_reduce SUM)
        and pass the sum to update_stats:

            s = th.local_stats(shard_probs, labeled=shard_labeled_probs)
            dist.all_reduce(t := torch.from_numpy(s))      # SUM, float64
            th.update_stats(t.numpy())
        """
        stats = np.zeros(self.stats_size(), np.float64)
        probs, ld = A.matrix(probs, "probs", ncols=self.num_classes)
        self._check(lib.kd_threshold_local_stats(self._handle(), probs.shape[0], self.num_classes,
                                                 A.fptr(probs), ld, A.dptr(stats)),
                    "kd_threshold_local_stats")
        if labeled is not None:
            labeled, ld = A.matrix(labeled, "labeled", ncols=self.num_classes)
            self._check(lib.kd_threshold_local_labeled_stats(
                self._handle(), labeled.shape[0], self.num_classes, A.fptr(labeled), ld,
                A.dptr(stats)), "kd_threshold_local_labeled_stats")
        return stats

    def update_stats(self, stats):
        """Apply the statistics summed over every rank: the state change of
        update_probs (and update_labeled_probs) with every rank's rows."""
        s = np.ascontiguousarray(stats, np.float64).reshape(-1)
        if s.shape[0] != self.stats_size():
            raise ValueError("stats must hold %d values, got %d" % (self.stats_size(), s.shape[0]))
        self._check(lib.kd_threshold_update_stats(self._handle(), A.dptr(s)),
                    "kd_threshold_update_stats")

    def state(self, what):
        """A state array by name: "global_threshold", "class_probs",
        "label_histogram", "conf_mean", "conf_var", "class_conf_mean",
        "class_conf_var", "target_probs", "labeled_confidence", "rho" (float32),
        "updates", "labeled_updates", "rho_updates", "hard_label" (int)."""
        key = {"global_threshold": (STATE_GLOBAL_THRESHOLD, 1),
               "class_probs": (STATE_CLASS_PROBS, self.num_classes),
               "label_histogram": (STATE_LABEL_HISTOGRAM, self.num_classes),
               "conf_mean": (STATE_CONF_MEAN, 1), "conf_var": (STATE_CONF_VAR, 1),
               "class_conf_mean": (STATE_CLASS_CONF_MEAN, self.num_classes),
               "class_conf_var": (STATE_CLASS_CONF_VAR, self.num_classes),
               "target_probs": (STATE_TARGET_PROBS, self.num_classes),
               "labeled_confidence": (STATE_LABELED_CONFIDENCE, 1), "rho": (STATE_RHO, 1)}
        ints = {"updates": STATE_UPDATES, "labeled_updates": STATE_LABELED_UPDATES,
                "rho_updates": STATE_RHO_UPDATES, "hard_label": STATE_HARD_LABEL}
        if what in ints:
            return int(self._ints(ints[what], 1)[0])
        if what not in key:
            raise ValueError("unknown state array %r" % (what,))
        return self._floats(*key[what])

    def _floats(self, what, count):
        out = np.empty(count, np.float32)
        self._check(lib.kd_threshold_get_floats(self._handle(), what, count, A.fptr(out)),
                    "kd_threshold_get_floats")
        return out

    def _ints(self, what, count):
        out = np.empty(count, np.int64)
        self._check(lib.kd_threshold_get_ints(self._handle(), what, count, A.i64ptr(out)),
                    "kd_threshold_get_ints")
        return out

    def thresholds(self):
        """tau_c for every class (float32 array of C)."""
        return self._floats(STATE_CLASS_THRESHOLDS, self.num_classes)

    def learning_effect(self):
        """FlexMatch's beta_c for every class (float32 array of C)."""
        return self._floats(STATE_LEARNING_EFFECT, self.num_classes)

    def counts(self):
        """FlexMatch's (sigma: int64 array of C per-class counts, unused: int)."""
        return (self._ints(STATE_CLASS_COUNTS, self.num_classes),
                int(self._ints(STATE_UNUSED, 1)[0]))

    def predictions(self):
        """FlexMatch's last confident prediction of every sample (int32, -1 = none)."""
        return self._ints(STATE_PREDICTIONS, self.num_samples).astype(np.int32)

    def save(self, path):
        self._check(self._c("save")(self._handle(), os.fsencode(path)), self._prefix + "_save")

    def load(self, path):
        self._check(self._c("load")(self._handle(), os.fsencode(path)), self._prefix + "_load")
