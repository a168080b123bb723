"""FlexMatchThresholds: the kd_flexmatch handle (include/kdlib/flexmatch.h)."""
import ctypes
import os

import numpy as np

from . import _arrays as A
from ._handle import Handle
from ._lib import lib, raise_for_status, kd_flexmatch_p

PARAM_THRESHOLD, PARAM_MAPPING, PARAM_WARMUP, PARAM_NON_STRICT = 1, 2, 3, 4
PARAM_NUM_SAMPLES, PARAM_NUM_CLASSES = 5, 6
MAPPING_LINEAR, MAPPING_CONCAVE, MAPPING_CONVEX = 0, 1, 2
_MAPPINGS = {"linear": MAPPING_LINEAR, "concave": MAPPING_CONCAVE, "convex": MAPPING_CONVEX}
_MAPPING_NAMES = {v: k for k, v in _MAPPINGS.items()}


def flexmatch_param_bounds(param):
    """kd_flexmatch_param_bounds(): (lower, upper) of a FlexMatch parameter."""
    lo, hi = ctypes.c_double(), ctypes.c_double()
    raise_for_status(lib.kd_flexmatch_param_bounds(int(param), ctypes.byref(lo), ctypes.byref(hi)),
                     "kd_flexmatch_param_bounds")
    return lo.value, hi.value


class FlexMatchThresholds(Handle):
    """FlexMatch per-class dynamic thresholds over an unlabeled set.

        fm = FlexMatchThresholds(num_samples, num_classes, threshold=0.95)
        tau_c = fm.thresholds()                   # before the batch's update
        r = kdlib.pseudo_label(student, teacher, class_thresholds=tau_c)
        fm.update(batch_indices, confidences, predictions)

    mapping: "convex" (x / (2 - x), tllib), "linear", "concave".  warmup:
    count never-predicted samples in the normaliser.  non_strict: the update
    selects confidence >= threshold instead of >.
    """

    _prefix = "kd_flexmatch"
    _closed_message = "the FlexMatchThresholds handle is closed"

    def __init__(self, num_samples, num_classes, threshold=0.95, mapping="convex", warmup=False,
                 non_strict=False):
        h = kd_flexmatch_p()
        st = lib.kd_flexmatch_create(ctypes.byref(h), int(num_samples), int(num_classes))
        self._adopt(st, h)
        self.num_samples = int(num_samples)
        self.num_classes = int(num_classes)
        try:
            self.threshold = threshold
            self.mapping = mapping
            self.warmup = warmup
            self.non_strict = non_strict
        except Exception:
            self.close()
            raise

    @property
    def threshold(self):
        v = ctypes.c_float()
        self._check(lib.kd_flexmatch_get_float(self._handle(), PARAM_THRESHOLD, ctypes.byref(v)),
                    "kd_flexmatch_get_float")
        return v.value

    @threshold.setter
    def threshold(self, value):
        self._check(lib.kd_flexmatch_set_float(self._handle(), PARAM_THRESHOLD, float(value)),
                    "kd_flexmatch_set_float")

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

    def reset(self):
        """Every prediction back to -1 (parameters kept)."""
        self._check(lib.kd_flexmatch_reset(self._handle()), "kd_flexmatch_reset")

    def update(self, indices, confidences, predictions):
        """Record a batch: pred[indices[k]] = predictions[k] where
        confidences[k] > threshold.  indices: integer array (converted to
        int64), confidences: float32 array (other
        float arrays and lists are converted),
        predictions: integer array (converted to int32)."""
        indices = A.int_vector(indices, "indices", None, np.int64)
        n = indices.shape[0]
        confidences = A.float_vector(confidences, "confidences", n, copy_lists=True)
        predictions = A.int_vector(predictions, "predictions", n)
        self._check(lib.kd_flexmatch_update(self._handle(), n, A.i64ptr(indices), A.fptr(confidences),
                                            A.i32ptr(predictions)), "kd_flexmatch_update")

    def thresholds(self):
        """tau_c for every class (float32 array of C)."""
        out = np.empty(self.num_classes, np.float32)
        self._check(lib.kd_flexmatch_thresholds(self._handle(), A.fptr(out)), "kd_flexmatch_thresholds")
        return out

    def learning_effect(self):
        """beta_c for every class (float32 array of C)."""
        out = np.empty(self.num_classes, np.float32)
        self._check(lib.kd_flexmatch_learning_effect(self._handle(), A.fptr(out)),
                    "kd_flexmatch_learning_effect")
        return out

    def counts(self):
        """(sigma: int64 array of C per-class counts, unused: int)."""
        sigma = np.empty(self.num_classes, np.int64)
        unused = ctypes.c_int64()
        self._check(lib.kd_flexmatch_counts(self._handle(), A.i64ptr(sigma), ctypes.byref(unused)),
                    "kd_flexmatch_counts")
        return sigma, unused.value

    def predictions(self):
        """The last confident prediction of every sample (int32, -1 = none)."""
        out = np.empty(self.num_samples, np.int32)
        self._check(lib.kd_flexmatch_predictions(self._handle(), A.i32ptr(out)), "kd_flexmatch_predictions")
        return out

    def save(self, path):
        self._check(lib.kd_flexmatch_save(self._handle(), os.fsencode(path)), "kd_flexmatch_save")

    def load(self, path):
        self._check(lib.kd_flexmatch_load(self._handle(), os.fsencode(path)), "kd_flexmatch_load")
