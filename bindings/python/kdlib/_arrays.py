"""Validation of NumPy arguments and their conversion to C pointers.

Float matrices are never copied: they must be float32, 2-D, with unit column
stride and a non-negative row stride that is a multiple of 4 bytes (a
C-contiguous array or a row slice / column slice of one); the row stride in
elements is passed to C as ld.  Integer vectors (labels, predictions, indices)
of another integer dtype are converted to the C type (a copy of n integers),
after checking that every value fits.  Small parameter vectors given as lists
(teacher weights, per-class thresholds) are converted too.
"""
import ctypes

import numpy as np

from ._lib import c_double_p, c_float_p, c_int32_p, c_int64_p, c_uint8_p

_F32 = np.dtype(np.float32)


def _describe(a):
    if isinstance(a, np.ndarray):
        return "numpy.ndarray of dtype %s" % a.dtype
    return type(a).__name__


def matrix(a, name, shape=None, ncols=None, allow_empty_rows=True):
    """Check a float32 row-strided 2-D array; return (array, ld)."""
    if not isinstance(a, np.ndarray) or a.dtype != _F32:
        raise TypeError("%s must be a numpy.ndarray of float32 (native byte order), got %s"
                        % (name, _describe(a)))
    if a.ndim != 2:
        raise ValueError("%s must be 2-D (rows x classes), got %d-D shape %s"
                         % (name, a.ndim, a.shape))
    n, c = a.shape
    if c < 1:
        raise ValueError("%s must have at least one column (class), got shape %s" % (name, a.shape))
    if shape is not None and a.shape != tuple(shape):
        raise ValueError("%s must have shape %s, got %s" % (name, tuple(shape), a.shape))
    if ncols is not None and c != ncols:
        raise ValueError("%s must have %d columns, got shape %s" % (name, ncols, a.shape))
    if not a.flags.aligned:
        raise ValueError("%s is not aligned to 4 bytes" % name)
    s0, s1 = a.strides
    if n > 0 and c > 1 and s1 != 4:
        raise ValueError("%s must have contiguous rows (column stride 4 bytes, got %d); "
                         "use numpy.ascontiguousarray(%s)" % (name, s1, name))
    if n <= 1:
        ld = c
    else:
        if s0 < 0 or s0 % 4 != 0 or s0 // 4 < c:
            raise ValueError("%s has row stride %d bytes: need a multiple of 4 that is at least "
                             "4 * %d (the columns); use numpy.ascontiguousarray(%s)"
                             % (name, s0, c, name))
        ld = s0 // 4
    return a, ld


def fptr(a):
    # ctypes.cast of the address: a third faster than a.ctypes.data_as
    return None if a is None else ctypes.cast(a.ctypes.data, c_float_p)


def i32ptr(a):
    return None if a is None else ctypes.cast(a.ctypes.data, c_int32_p)


def i64ptr(a):
    return None if a is None else a.ctypes.data_as(c_int64_p)


def dptr(a):
    return None if a is None else a.ctypes.data_as(c_double_p)


def u8ptr(a):
    return None if a is None else a.ctypes.data_as(c_uint8_p)


def float_vector(a, name, length, copy_lists=False):
    """A 1-D float32 contiguous vector of the given length (never copied unless
    copy_lists and a is not an ndarray: then converted)."""
    if not isinstance(a, np.ndarray):
        if not copy_lists:
            raise TypeError("%s must be a numpy.ndarray of float32, got %s" % (name, _describe(a)))
        try:
            a = np.ascontiguousarray(a, dtype=np.float32)
        except (TypeError, ValueError) as exc:
            raise TypeError("%s must be a sequence of numbers: %s" % (name, exc))
    elif a.dtype != _F32:
        if not copy_lists:
            raise TypeError("%s must be a numpy.ndarray of float32, got %s" % (name, _describe(a)))
        a = np.ascontiguousarray(a, dtype=np.float32)
    if a.ndim != 1:
        raise ValueError("%s must be 1-D, got shape %s" % (name, a.shape))
    if length is not None and a.shape[0] != length:
        raise ValueError("%s must have %d values, got %d" % (name, length, a.shape[0]))
    if not a.flags.c_contiguous:
        if not copy_lists:
            raise ValueError("%s must be contiguous" % name)
        a = np.ascontiguousarray(a)
    return a


def int_vector(a, name, length, ctype=np.int32):
    """A 1-D integer vector of the C type; other integer dtypes are converted
    (documented copy) after a range check."""
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except (TypeError, ValueError) as exc:
            raise TypeError("%s must be an integer array: %s" % (name, exc))
        if a.size == 0:
            a = a.astype(ctype)
    if a.dtype.kind not in "iu":
        raise TypeError("%s must be an integer array, got %s" % (name, _describe(a)))
    if a.ndim != 1:
        raise ValueError("%s must be 1-D, got shape %s" % (name, a.shape))
    if length is not None and a.shape[0] != length:
        raise ValueError("%s must have %d values (one per row), got %d" % (name, length, a.shape[0]))
    target = np.dtype(ctype)
    if a.dtype != target:
        info = np.iinfo(target)
        if a.size:
            # Compare as Python ints: NumPy compares uint64 with a signed bound
            # in float64, where 2^63 == 2^63 - 1, and the cast would then wrap
            # 2^63 to -2^63 (a "negative index" in C's message).
            lo, hi = int(a.min()), int(a.max())
            if lo < info.min or hi > info.max:
                k = int(np.argmin(a)) if lo < info.min else int(np.argmax(a))
                raise ValueError("%s[%d] = %d is outside the %s range [%d, %d]"
                                 % (name, k, int(a[k]), target, info.min, info.max))
        a = a.astype(target)
    elif not a.flags.c_contiguous:
        a = np.ascontiguousarray(a)
    return a


def pointer_array(arrays):
    """A C array of float pointers (const float *const *)."""
    arr = (c_float_p * max(len(arrays), 1))()
    for i, a in enumerate(arrays):
        arr[i] = fptr(a)
    return arr


def int64_array(values):
    return (ctypes.c_int64 * max(len(values), 1))(*values)
