"""kdlib: Python binding of libkd (knowledge-distillation, pseudo-labeling and
self-training losses, EMA teacher, FlexMatch thresholds, label tools).

A pure-Python ctypes binding: every computation runs in libkd.  The library
is found through $KDLIB_LIBRARY, else the installed libkd.so.1, else a build
tree next to the sources (build*/src/libkd.so*).

Functional API on NumPy float32 arrays (C-contiguous or row-strided 2-D);
each loss returns a LossResult with .loss and the gradients:

    r = kdlib.kl_distill(student, teacher, labels, temperature=4.0, alpha=0.9)
    r.loss, r.grad_student

kdlib.torch has torch.autograd.Function wrappers of the same losses.
"""
from ._errors import (KdError, KdNullPointerError, KdInvalidArgumentError, KdShapeError,
                      KdUnsupportedError, KdMissingInputError, KdOutOfMemoryError,
                      KdNotFiniteError, KdAliasingError, KdIOError, KdCorruptError,
                      KdVersionError, KdMismatchError, KdStateError)
from ._lib import (library_path, library_version, library_version_string, status_string,
                   BINDING_VERSION_NUMBER)
from ._losses import (Loss, LossResult, param_bounds, cross_entropy, soft_cross_entropy,
                      kl_distill, logit_mse, pseudo_label, strong_weak_consistency, consistency,
                      class_balance, mcc, worst_case_estimation, entropy, fairness)
from ._linear import linear_kl_distill, default_chunk_rows
from ._ema import EMATeacher, ema_param_bounds
from ._flexmatch import FlexMatchThresholds, flexmatch_param_bounds
from ._threshold import Thresholds, threshold_param_bounds
from ._distributed import (split_batch_loss, torch_split_batch_loss,  # data-parallel
                           torch_all_gather_rows, torch_threshold_update,
                           torch_threshold_update_labeled)
from ._labels import (select_pseudo_labels, tsa_threshold, tsa_mask, label_quality, find_label_issues, soft_labels,
                      ensemble_average, confident_learning_suspects, get_label_quality_scores,
                      get_confident_thresholds, compute_confident_joint, estimate_joint,
                      estimate_py_and_noise_matrices_from_probabilities, num_label_issues,
                      soft_labels_selective)
from . import _losses as losses_constants  # KD_* values: CROSS_ENTROPY, PARAM_*, ARG_*, ...

__version__ = library_version_string  # the loaded library's kd_version_string()


def version():
    """The running library's version string (kd_version_string)."""
    return library_version_string


__all__ = [
    "KdError", "KdNullPointerError", "KdInvalidArgumentError", "KdShapeError",
    "KdUnsupportedError", "KdMissingInputError", "KdOutOfMemoryError", "KdNotFiniteError",
    "KdAliasingError", "KdIOError", "KdCorruptError", "KdVersionError", "KdMismatchError",
    "KdStateError", "library_path", "library_version", "version", "status_string",
    "Loss", "LossResult", "param_bounds", "cross_entropy", "soft_cross_entropy", "kl_distill",
    "logit_mse", "pseudo_label", "strong_weak_consistency", "consistency", "class_balance", "mcc",
    "worst_case_estimation", "entropy", "fairness", "linear_kl_distill", "default_chunk_rows", "EMATeacher", "ema_param_bounds", "FlexMatchThresholds", "Thresholds", "threshold_param_bounds",
    "flexmatch_param_bounds", "select_pseudo_labels", "tsa_threshold", "tsa_mask",
    "label_quality", "find_label_issues",
    "soft_labels", "ensemble_average", "split_batch_loss", "torch_split_batch_loss",
    "torch_all_gather_rows", "torch_threshold_update", "torch_threshold_update_labeled",
    "confident_learning_suspects", "get_label_quality_scores",
    "get_confident_thresholds", "compute_confident_joint", "estimate_joint",
    "estimate_py_and_noise_matrices_from_probabilities", "num_label_issues",
    "soft_labels_selective",
]
