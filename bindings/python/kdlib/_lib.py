"""Loading libkd and declaring the C prototypes.

Every public C function of include/kdlib/*.h is declared here with its exact
argtypes and restype (ctypes' default int return type would truncate 64-bit
pointers, cpython #86477).  Nothing else in the package calls a C function
that is not in PROTOTYPES.
"""
import ctypes
import ctypes.util
import glob
import os

from ._errors import KdError, error_for_status

# The C API this binding was written for (include/kdlib/core.h).
BINDING_VERSION_MAJOR = 0
BINDING_VERSION_MINOR = 2  # 0.2: the kd_threshold family, double EMA parameters
BINDING_VERSION_NUMBER = BINDING_VERSION_MAJOR * 10000 + BINDING_VERSION_MINOR * 100
BINDING_SOVERSION = 1  # the soname's number, KD_SOVERSION in CMakeLists.txt: libkd.so.1

c_float_p = ctypes.POINTER(ctypes.c_float)
c_double_p = ctypes.POINTER(ctypes.c_double)
c_int32_p = ctypes.POINTER(ctypes.c_int32)
c_int64_p = ctypes.POINTER(ctypes.c_int64)
c_uint8_p = ctypes.POINTER(ctypes.c_uint8)
c_char_buf = ctypes.POINTER(ctypes.c_char)   # char *err (caller's buffer)
c_float_pp = ctypes.POINTER(c_float_p)       # const float *const *
kd_status = ctypes.c_int32
i32, i64, f32, f64, size_t = (ctypes.c_int32, ctypes.c_int64, ctypes.c_float,
                              ctypes.c_double, ctypes.c_size_t)


class kd_loss(ctypes.Structure):
    """Opaque C struct kd_loss (only pointers to it are used)."""


class kd_ema(ctypes.Structure):
    """Opaque C struct kd_ema."""


class kd_flexmatch(ctypes.Structure):
    """Opaque C struct kd_flexmatch."""


class kd_threshold(ctypes.Structure):
    """Opaque C struct kd_threshold."""


kd_loss_p = ctypes.POINTER(kd_loss)
kd_ema_p = ctypes.POINTER(kd_ema)
kd_flexmatch_p = ctypes.POINTER(kd_flexmatch)
kd_threshold_p = ctypes.POINTER(kd_threshold)

# name: (restype, argtypes), in header order.
PROTOTYPES = {
    # core.h
    "kd_status_string": (ctypes.c_char_p, [kd_status]),
    "kd_version_number": (i32, []),
    "kd_version_string": (ctypes.c_char_p, []),
    # loss.h
    "kd_loss_create": (kd_status, [ctypes.POINTER(kd_loss_p), i32, i64]),
    "kd_loss_destroy": (None, [kd_loss_p]),
    "kd_loss_last_error": (ctypes.c_char_p, [kd_loss_p]),
    "kd_loss_set_int": (kd_status, [kd_loss_p, i32, i64]),
    "kd_loss_set_float": (kd_status, [kd_loss_p, i32, f64]),
    "kd_loss_get_int": (kd_status, [kd_loss_p, i32, c_int64_p]),
    "kd_loss_get_float": (kd_status, [kd_loss_p, i32, c_double_p]),
    "kd_loss_param_bounds": (kd_status, [i32, i32, c_double_p, c_double_p, c_int32_p]),
    "kd_loss_bind_matrix": (kd_status, [kd_loss_p, i32, c_float_p, i64]),
    "kd_loss_bind_teachers": (kd_status, [kd_loss_p, i32, c_float_pp, c_int64_p, c_float_p]),
    "kd_loss_bind_labels": (kd_status, [kd_loss_p, c_int32_p]),
    "kd_loss_bind_labels64": (kd_status, [kd_loss_p, c_int64_p]),
    "kd_loss_bind_weights": (kd_status, [kd_loss_p, c_float_p]),
    "kd_loss_bind_vector": (kd_status, [kd_loss_p, i32, c_float_p]),
    "kd_loss_bind_output_labels": (kd_status, [kd_loss_p, i32, c_int32_p]),
    "kd_loss_bind_output": (kd_status, [kd_loss_p, i32, c_float_p, i64]),
    "kd_loss_forward": (kd_status, [kd_loss_p, i64, c_float_p]),
    "kd_loss_backward": (kd_status, [kd_loss_p, i64, c_float_p]),
    "kd_loss_forward_backward": (kd_status, [kd_loss_p, i64, c_float_p]),
    "kd_loss_stats_size": (kd_status, [kd_loss_p, c_int64_p]),
    "kd_loss_local_stats": (kd_status, [kd_loss_p, i64, c_double_p]),
    "kd_loss_finish": (kd_status, [kd_loss_p, i64, c_double_p, c_float_p]),
    # linear.h
    "kd_linear_kl_distill": (kd_status, [kd_loss_p, i64, i64, c_float_p, i64, c_float_p, i64, c_float_p,
                                         i64, c_float_p, i64, c_float_p, i64, c_float_p, i64,
                                         c_float_p, c_float_p, i64, c_float_p, i64, c_float_p]),
    "kd_linear_default_chunk_rows": (i64, [i64]),
    # ema.h
    "kd_ema_create": (kd_status, [ctypes.POINTER(kd_ema_p), i32, c_float_pp, c_int64_p, c_int32_p]),
    "kd_ema_create_flat": (kd_status, [ctypes.POINTER(kd_ema_p), c_float_p, i64]),
    "kd_ema_destroy": (None, [kd_ema_p]),
    "kd_ema_set_float": (kd_status, [kd_ema_p, i32, f64]),
    "kd_ema_set_int": (kd_status, [kd_ema_p, i32, i64]),
    "kd_ema_get_float": (kd_status, [kd_ema_p, i32, c_double_p]),
    "kd_ema_get_int": (kd_status, [kd_ema_p, i32, c_int64_p]),
    "kd_ema_param_bounds": (kd_status, [i32, c_double_p, c_double_p]),
    "kd_ema_update": (kd_status, [kd_ema_p, c_float_pp]),
    "kd_ema_update_flat": (kd_status, [kd_ema_p, c_float_p]),
    "kd_ema_step": (kd_status, [kd_ema_p, c_int64_p]),
    "kd_ema_next_decay": (kd_status, [kd_ema_p, c_double_p]),
    "kd_ema_shape": (kd_status, [kd_ema_p, c_int32_p, c_int64_p]),
    "kd_ema_teacher": (kd_status, [kd_ema_p, i32, ctypes.POINTER(c_float_p), c_int64_p]),
    "kd_ema_teacher_flat": (kd_status, [kd_ema_p, ctypes.POINTER(c_float_p), c_int64_p]),
    "kd_ema_copy_to": (kd_status, [kd_ema_p, c_float_pp]),
    "kd_ema_copy_to_flat": (kd_status, [kd_ema_p, c_float_p]),
    "kd_ema_swap": (kd_status, [kd_ema_p, c_float_pp]),
    "kd_ema_swap_flat": (kd_status, [kd_ema_p, c_float_p]),
    "kd_ema_reset": (kd_status, [kd_ema_p, c_float_pp]),
    "kd_ema_reset_flat": (kd_status, [kd_ema_p, c_float_p]),
    "kd_ema_save": (kd_status, [kd_ema_p, ctypes.c_char_p]),
    "kd_ema_load": (kd_status, [kd_ema_p, ctypes.c_char_p]),
    "kd_ema_last_error": (ctypes.c_char_p, [kd_ema_p]),
    # flexmatch.h (deprecated names; the binding uses threshold.h)
    "kd_flexmatch_create": (kd_status, [ctypes.POINTER(kd_flexmatch_p), i64, i64]),
    "kd_flexmatch_destroy": (None, [kd_flexmatch_p]),
    "kd_flexmatch_reset": (kd_status, [kd_flexmatch_p]),
    "kd_flexmatch_set_float": (kd_status, [kd_flexmatch_p, i32, f32]),
    "kd_flexmatch_set_int": (kd_status, [kd_flexmatch_p, i32, i64]),
    "kd_flexmatch_get_float": (kd_status, [kd_flexmatch_p, i32, c_float_p]),
    "kd_flexmatch_get_int": (kd_status, [kd_flexmatch_p, i32, c_int64_p]),
    "kd_flexmatch_param_bounds": (kd_status, [i32, c_double_p, c_double_p]),
    "kd_flexmatch_update": (kd_status, [kd_flexmatch_p, i64, c_int64_p, c_float_p, c_int32_p]),
    "kd_flexmatch_thresholds": (kd_status, [kd_flexmatch_p, c_float_p]),
    "kd_flexmatch_learning_effect": (kd_status, [kd_flexmatch_p, c_float_p]),
    "kd_flexmatch_counts": (kd_status, [kd_flexmatch_p, c_int64_p, c_int64_p]),
    "kd_flexmatch_predictions": (kd_status, [kd_flexmatch_p, c_int32_p]),
    "kd_flexmatch_save": (kd_status, [kd_flexmatch_p, ctypes.c_char_p]),
    "kd_flexmatch_load": (kd_status, [kd_flexmatch_p, ctypes.c_char_p]),
    "kd_flexmatch_last_error": (ctypes.c_char_p, [kd_flexmatch_p]),
    # threshold.h
    "kd_threshold_create": (kd_status, [ctypes.POINTER(kd_threshold_p), i32, i64, i64]),
    "kd_threshold_destroy": (None, [kd_threshold_p]),
    "kd_threshold_reset": (kd_status, [kd_threshold_p]),
    "kd_threshold_algorithm_name": (ctypes.c_char_p, [i32]),
    "kd_threshold_set_float": (kd_status, [kd_threshold_p, i32, f64]),
    "kd_threshold_set_int": (kd_status, [kd_threshold_p, i32, i64]),
    "kd_threshold_get_float": (kd_status, [kd_threshold_p, i32, c_double_p]),
    "kd_threshold_get_int": (kd_status, [kd_threshold_p, i32, c_int64_p]),
    "kd_threshold_param_bounds": (kd_status, [i32, i32, c_double_p, c_double_p]),
    "kd_threshold_update": (kd_status, [kd_threshold_p, i64, c_int64_p, c_float_p, c_int32_p]),
    "kd_threshold_weights": (kd_status, [kd_threshold_p, i64, c_float_p, c_int32_p, c_float_p]),
    "kd_threshold_update_probs": (kd_status, [kd_threshold_p, i64, i64, c_float_p, i64, c_int64_p]),
    "kd_threshold_update_labeled_probs": (kd_status, [kd_threshold_p, i64, i64, c_float_p, i64]),
    "kd_threshold_weights_probs": (kd_status, [kd_threshold_p, i64, i64, c_float_p, i64, c_float_p,
                                               c_int32_p]),
    "kd_threshold_stats_size": (kd_status, [kd_threshold_p, c_int64_p]),
    "kd_threshold_local_stats": (kd_status, [kd_threshold_p, i64, i64, c_float_p, i64, c_double_p]),
    "kd_threshold_local_labeled_stats": (kd_status, [kd_threshold_p, i64, i64, c_float_p, i64,
                                                     c_double_p]),
    "kd_threshold_update_stats": (kd_status, [kd_threshold_p, c_double_p]),
    "kd_threshold_get_floats": (kd_status, [kd_threshold_p, i32, i64, c_float_p]),
    "kd_threshold_get_ints": (kd_status, [kd_threshold_p, i32, i64, c_int64_p]),
    "kd_threshold_save": (kd_status, [kd_threshold_p, ctypes.c_char_p]),
    "kd_threshold_load": (kd_status, [kd_threshold_p, ctypes.c_char_p]),
    "kd_threshold_last_error": (ctypes.c_char_p, [kd_threshold_p]),
    # labels.h
    "kd_tsa_threshold": (kd_status, [i32, i64, i64, i64, c_double_p, c_char_buf, size_t]),
    "kd_tsa_mask": (kd_status, [i64, i64, c_float_p, i64, c_int32_p, i32, f64, c_float_p,
                                c_int64_p, c_char_buf, size_t]),
    "kd_select_pseudo_labels": (kd_status, [i64, i64, c_float_p, i64, i32, f32, c_float_p, i64,
                                            c_float_p, c_int32_p, c_float_p, c_int64_p,
                                            c_char_buf, size_t]),
    "kd_label_quality": (kd_status, [i64, i64, c_float_p, i64, c_int32_p, i32, i32, c_float_p,
                                     c_int64_p, c_int64_p, c_char_buf, size_t]),
    "kd_find_label_issues": (kd_status, [i64, i64, c_float_p, i64, c_int32_p, i32, c_float_p,
                                         c_int32_p, c_uint8_p, c_int64_p, c_char_buf, size_t]),
    "kd_soft_labels": (kd_status, [i64, i64, c_int32_p, i32, f32, i32, c_float_p, i64, c_int32_p,
                                   c_float_p, i64, c_char_buf, size_t]),
    "kd_soft_labels_selective": (kd_status, [i64, i64, c_int32_p, i32, f32, i32, i32, c_float_p,
                                             i64, c_uint8_p, c_float_p, i64, c_char_buf, size_t]),
    "kd_ensemble_average": (kd_status, [i64, i64, i32, c_float_pp, c_int64_p, c_float_p, c_float_p,
                                        i64, c_char_buf, size_t]),
    "kd_cleanlab_confident_thresholds": (kd_status, [i64, i64, c_float_p, i64, c_int32_p, i32,
                                                     c_double_p, c_char_buf, size_t]),
    "kd_cleanlab_confident_joint": (kd_status, [i64, i64, c_float_p, i64, c_int32_p, i32, i32,
                                                c_int64_p, c_uint8_p, c_int64_p, c_char_buf,
                                                size_t]),
    "kd_cleanlab_estimate_joint": (kd_status, [i64, i64, c_float_p, i64, c_int32_p, i32, c_int64_p,
                                               c_double_p, c_char_buf, size_t]),
    "kd_cleanlab_estimate_py_and_noise_matrices": (kd_status, [i64, i64, c_float_p, i64, c_int32_p,
                                                               i32, i32, c_double_p, c_double_p,
                                                               c_double_p, c_int64_p, c_char_buf,
                                                               size_t]),
    "kd_cleanlab_num_label_issues": (kd_status, [i64, i64, c_float_p, i64, c_int32_p, i32, i32,
                                                 c_int64_p, c_int64_p, c_char_buf, size_t]),
    "kd_cleanlab_find_label_issues": (kd_status, [i64, i64, c_float_p, i64, c_int32_p, i32, i32,
                                                  f64, c_int64_p, i64, i32, i32, c_uint8_p,
                                                  c_int64_p, c_int64_p, c_char_buf, size_t]),
    "kd_cleanlab_get_label_quality_scores": (kd_status, [i64, i64, c_float_p, i64, c_int32_p, i32,
                                                         i32, i32, c_double_p, c_char_buf,
                                                         size_t]),
}


# Functions added after the first 0.1.0 libraries: a library without them
# still loads; the Python functions that need them raise KdError.
OPTIONAL = {"kd_loss_stats_size", "kd_loss_local_stats", "kd_loss_finish",
            "kd_linear_kl_distill", "kd_linear_default_chunk_rows",
            "kd_cleanlab_confident_thresholds", "kd_cleanlab_confident_joint",
            "kd_cleanlab_estimate_joint", "kd_cleanlab_estimate_py_and_noise_matrices",
            "kd_cleanlab_num_label_issues", "kd_cleanlab_find_label_issues",
            "kd_cleanlab_get_label_quality_scores", "kd_soft_labels_selective",
            "kd_threshold_stats_size", "kd_threshold_local_stats",
            "kd_threshold_local_labeled_stats", "kd_threshold_update_stats"}


def has(name):
    """Whether the loaded library exports the C function `name`."""
    return name in available


def require(name):
    if name not in available:
        raise KdError("%s: not in the loaded library %s (built before this function existed)"
                      % (name, library_path))


def _installed():
    """The library installed with the package: bundled in it by a wheel
    built from a build tree (setup.py), or next to it after `cmake --install`,
    which writes _install_location.py with libkd's directory (relative to the
    package)."""
    here = os.path.dirname(os.path.abspath(__file__))
    name = "libkd.so.%d" % BINDING_SOVERSION
    found = [os.path.join(here, name)] if os.path.exists(os.path.join(here, name)) else []
    try:
        from . import _install_location
    except ImportError:
        return found
    d = os.path.normpath(os.path.join(here, _install_location.LIBRARY_DIR))
    return found + [os.path.join(d, name)]


def _candidates():
    """Paths to try, in order: $KDLIB_LIBRARY, the library installed next to
    this package (cmake --install), the system's libkd, the build tree."""
    env = os.environ.get("KDLIB_LIBRARY")
    if env:
        return [env], True
    found = _installed()
    name = ctypes.util.find_library("kd")
    if name:
        found.append(name)
    found.append("libkd.so.%d" % BINDING_SOVERSION)
    here = os.path.dirname(os.path.abspath(__file__))
    repo = os.path.dirname(os.path.dirname(os.path.dirname(here)))   # bindings/python/kdlib -> repo
    tree = []
    for root in (repo, os.path.dirname(repo)):
        for pattern in ("build*/src/libkd.so.%d" % BINDING_SOVERSION, "build*/src/libkd.so"):
            tree.extend(glob.glob(os.path.join(root, pattern)))
    tree.sort(key=lambda p: os.path.getmtime(p), reverse=True)  # the newest build first
    return found + tree, False


def _load():
    paths, explicit = _candidates()
    errors = []
    for path in paths:
        try:
            return ctypes.CDLL(path), path
        except OSError as exc:
            errors.append("%s: %s" % (path, exc))
            if explicit:
                break
    raise ImportError("kdlib: cannot load libkd (set KDLIB_LIBRARY to the path of libkd.so); tried:\n  "
                      + "\n  ".join(errors or ["(no candidate found)"]))


def _declare(lib):
    found = set()
    for name, (restype, argtypes) in PROTOTYPES.items():
        try:
            fn = getattr(lib, name)
        except AttributeError:
            if name in OPTIONAL:
                continue
            raise ImportError("kdlib: the loaded libkd has no symbol %s (library too old?)" % name)
        fn.restype = restype
        fn.argtypes = argtypes
        found.add(name)
    return found


lib, library_path = _load()
available = _declare(lib)

library_version = lib.kd_version_number()
library_version_string = lib.kd_version_string().decode()
if library_version // 10000 != BINDING_VERSION_MAJOR or library_version < BINDING_VERSION_NUMBER:
    raise ImportError("kdlib: %s is version %s; this binding needs %d.x (>= %d.%d)"
                      % (library_path, library_version_string, BINDING_VERSION_MAJOR,
                         BINDING_VERSION_MAJOR, BINDING_VERSION_MINOR))


def status_string(status):
    """kd_status_string(): the constant description of a status code."""
    return lib.kd_status_string(int(status)).decode()


def raise_for_status(status, function, message=""):
    """Raise the exception class of a non-zero kd_status, with the C message."""
    if status != 0:
        raise error_for_status(int(status), function, message, status_string(status))
