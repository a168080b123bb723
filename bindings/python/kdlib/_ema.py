"""EMATeacher: the kd_ema handle (include/kdlib/ema.h)."""
import ctypes
import os
import weakref

import numpy as np

from . import _arrays as A
from ._handle import Handle
from ._lib import lib, raise_for_status, kd_ema_p, c_float_p

AVERAGE, COPY = 0, 1
PARAM_DECAY, PARAM_WARMUP, PARAM_THREADS = 1, 2, 3
WARMUP_NONE, WARMUP_MEAN_TEACHER, WARMUP_TF = 0, 1, 2
_WARMUPS = {"none": WARMUP_NONE, "mean_teacher": WARMUP_MEAN_TEACHER, "tf": WARMUP_TF}
_WARMUP_NAMES = {v: k for k, v in _WARMUPS.items()}
_KINDS = {"average": AVERAGE, "copy": COPY}


def ema_param_bounds(param):
    """kd_ema_param_bounds(): (lower, upper) of an EMA parameter."""
    lo, hi = ctypes.c_double(), ctypes.c_double()
    raise_for_status(lib.kd_ema_param_bounds(int(param), ctypes.byref(lo), ctypes.byref(hi)),
                     "kd_ema_param_bounds")
    return lo.value, hi.value


def _warmup_value(warmup):
    if warmup is True:
        return WARMUP_MEAN_TEACHER
    if warmup is False or warmup is None:
        return WARMUP_NONE
    if isinstance(warmup, str) and warmup.lower() in _WARMUPS:
        return _WARMUPS[warmup.lower()]
    raise ValueError("warmup must be True (Mean Teacher), False, 'none', 'mean_teacher' or 'tf', "
                     "got %r" % (warmup,))


def _param_array(a, name, length=None, writeable=False):
    if not isinstance(a, np.ndarray) or a.dtype != np.float32:
        raise TypeError("%s must be a numpy.ndarray of float32, got %s" % (name, A._describe(a)))
    if not a.flags.c_contiguous:
        raise ValueError("%s must be C-contiguous (the teacher reads it as %d consecutive floats)"
                         % (name, a.size))
    if length is not None and a.size != length:
        raise ValueError("%s must have %d elements, got %d" % (name, length, a.size))
    if writeable and not a.flags.writeable:
        raise ValueError("%s must be writeable" % name)
    return a


class EMATeacher(Handle):
    """An EMA teacher over float32 parameter arrays (kd_ema).

        ema = EMATeacher([w1, b1, w2, b2], decay=0.999, warmup=True)
        ...  # the optimizer updates w1, b1, ... in place
        ema.update()             # teacher = a_t teacher + (1 - a_t) student
        ema.teacher(0)           # read-only view of teacher array 0

    arrays: a list of C-contiguous float32 arrays of any shape (the student's
    parameters; for PyTorch, [p.detach().numpy() for p in model.parameters()]
    shares memory with the model), or one array (kd_ema_create_flat).
    The list is remembered: update(), copy_to(), swap() and reset() use it
    unless given other arrays of the same shapes.
    decay: a in [0, 1].  warmup: True = Mean Teacher's min(a, 1 - 1/(t+1)),
    "tf" = min(a, (1+t)/(10+t)), False = none.  kinds: None or one of
    "average" / "copy" per array (copy: BatchNorm running statistics).
    """

    _prefix = "kd_ema"
    _closed_message = "the EMATeacher is closed"

    def __init__(self, arrays, decay=0.999, warmup=True, kinds=None, threads=1):
        h = kd_ema_p()
        if isinstance(arrays, np.ndarray):
            flat = _param_array(arrays, "arrays")
            if kinds is not None:
                raise ValueError("kinds needs a list of arrays")
            st = lib.kd_ema_create_flat(ctypes.byref(h), A.fptr(flat), flat.size)
            self._arrays = [flat]
        else:
            arrays = list(arrays)
            if not arrays:
                raise ValueError("arrays: at least one array is needed")
            arrays = [_param_array(a, "arrays[%d]" % i) for i, a in enumerate(arrays)]
            kind_arr = None
            if kinds is not None:
                kinds = list(kinds)
                if len(kinds) != len(arrays):
                    raise ValueError("kinds must have %d entries, got %d" % (len(arrays), len(kinds)))
                vals = []
                for i, k in enumerate(kinds):
                    if isinstance(k, str) and k.lower() in _KINDS:
                        vals.append(_KINDS[k.lower()])
                    elif k in (AVERAGE, COPY) and not isinstance(k, bool):
                        vals.append(int(k))
                    else:
                        raise ValueError("kinds[%d] must be 'average' or 'copy', got %r" % (i, k))
                kind_arr = (ctypes.c_int32 * len(vals))(*vals)
            st = lib.kd_ema_create(ctypes.byref(h), len(arrays), A.pointer_array(arrays),
                                   A.int64_array([a.size for a in arrays]), kind_arr)
            self._arrays = arrays
        self._adopt(st, h)
        self._closed = False
        self._views = []
        self._lengths = [a.size for a in self._arrays]
        self._shapes = [a.shape for a in self._arrays]
        self._flat = isinstance(arrays, np.ndarray)
        try:
            self.decay = decay
            self.warmup = warmup
            self.threads = threads
        except Exception:
            self.close()
            raise

    # -- life cycle --
    def close(self):
        """Release the handle (kd_ema_destroy).  The object is unusable
        afterwards.  Views from teacher() keep the teacher storage alive: if
        any is still referenced, the C handle is destroyed when the last one
        goes away instead of now."""
        self._closed = True
        views = getattr(self, "_views", [])
        self._views = [r for r in views if r() is not None]
        if not self._views:
            self._destroy()

    # -- parameters --
    @property
    def decay(self):
        return self._get_float(PARAM_DECAY)

    @decay.setter
    def decay(self, value):
        self._set_float(PARAM_DECAY, value)

    @property
    def warmup(self):
        """The warm-up schedule: 'none', 'mean_teacher' or 'tf'."""
        v = self._get_int(PARAM_WARMUP)
        return _WARMUP_NAMES.get(v, v)

    @warmup.setter
    def warmup(self, value):
        self._set_int(PARAM_WARMUP, _warmup_value(value))

    @property
    def threads(self):
        return self._get_int(PARAM_THREADS)

    @threads.setter
    def threads(self, value):
        value = int(value)
        if not -2**31 <= value < 2**31:
            raise ValueError("threads out of range: %d" % value)
        self._set_int(PARAM_THREADS, value)

    @property
    def step(self):
        """Number of updates since create / reset (kd_ema_step)."""
        v = ctypes.c_int64()
        self._check(lib.kd_ema_step(self._handle(), ctypes.byref(v)), "kd_ema_step")
        return v.value

    @property
    def next_decay(self):
        """a_t the next update will use (kd_ema_next_decay)."""
        v = ctypes.c_double()
        self._check(lib.kd_ema_next_decay(self._handle(), ctypes.byref(v)), "kd_ema_next_decay")
        return v.value

    @property
    def shape(self):
        """(num_arrays, total_length) (kd_ema_shape)."""
        n, total = ctypes.c_int32(), ctypes.c_int64()
        self._check(lib.kd_ema_shape(self._handle(), ctypes.byref(n), ctypes.byref(total)), "kd_ema_shape")
        return n.value, total.value

    def __len__(self):
        return len(self._lengths)

    # -- student arrays --
    def _students(self, arrays, writeable):
        if arrays is None:
            arrays = self._arrays
        elif isinstance(arrays, np.ndarray) and self._flat:
            arrays = [arrays]
        else:
            arrays = list(arrays)
        if len(arrays) != len(self._lengths):
            raise ValueError("arrays must hold %d arrays, got %d" % (len(self._lengths), len(arrays)))
        return [_param_array(a, "arrays[%d]" % i, self._lengths[i], writeable)
                for i, a in enumerate(arrays)]

    def _flat_arg(self, flat, writeable):
        total = self.shape[1]
        return _param_array(flat, "flat", total, writeable)

    def update(self, arrays=None):
        """One EMA step from the student arrays (default: the registered ones)."""
        arrays = self._students(arrays, False)
        self._check(lib.kd_ema_update(self._handle(), A.pointer_array(arrays)), "kd_ema_update")

    def update_flat(self, flat):
        """One EMA step from one buffer holding every array back to back."""
        flat = self._flat_arg(flat, False)
        self._check(lib.kd_ema_update_flat(self._handle(), A.fptr(flat)), "kd_ema_update_flat")

    def _view(self, ptr, length, shape):
        if length == 0 or not ptr:
            return np.zeros(shape, np.float32)
        buf = (ctypes.c_float * length).from_address(ctypes.addressof(ptr.contents))
        buf._kdlib_owner = self     # the handle's storage lives as long as the view
        self._views = [r for r in self._views if r() is not None] + [weakref.ref(buf)]
        view = np.frombuffer(buf, dtype=np.float32).reshape(shape)
        view.flags.writeable = False
        return view

    def teacher(self, index=None, copy=False):
        """Teacher array `index` as a read-only view of the handle's storage
        (it follows later updates; copy=True returns a copy).  index=None:
        the list of all teacher arrays."""
        if index is None:
            return [self.teacher(i, copy) for i in range(len(self._lengths))]
        index = int(index)
        if not 0 <= index < 2**31:
            raise ValueError("index out of range: %d" % index)
        data, length = c_float_p(), ctypes.c_int64()
        self._check(lib.kd_ema_teacher(self._handle(), index, ctypes.byref(data), ctypes.byref(length)),
                    "kd_ema_teacher")
        v = self._view(data, length.value, self._shapes[index])
        return v.copy() if copy else v

    def teacher_flat(self, copy=False):
        """The whole teacher as one read-only 1-D view (kd_ema_teacher_flat)."""
        data, length = c_float_p(), ctypes.c_int64()
        self._check(lib.kd_ema_teacher_flat(self._handle(), ctypes.byref(data), ctypes.byref(length)),
                    "kd_ema_teacher_flat")
        v = self._view(data, length.value, (length.value,))
        return v.copy() if copy else v

    def copy_to(self, arrays=None):
        """Copy the teacher into the student arrays (default: the registered ones)."""
        arrays = self._students(arrays, True)
        self._check(lib.kd_ema_copy_to(self._handle(), A.pointer_array(arrays)), "kd_ema_copy_to")

    def copy_to_flat(self, flat):
        flat = self._flat_arg(flat, True)
        self._check(lib.kd_ema_copy_to_flat(self._handle(), A.fptr(flat)), "kd_ema_copy_to_flat")

    def swap(self, arrays=None):
        """Exchange teacher and student values (twice restores both)."""
        arrays = self._students(arrays, True)
        self._check(lib.kd_ema_swap(self._handle(), A.pointer_array(arrays)), "kd_ema_swap")

    def swap_flat(self, flat):
        flat = self._flat_arg(flat, True)
        self._check(lib.kd_ema_swap_flat(self._handle(), A.fptr(flat)), "kd_ema_swap_flat")

    def reset(self, arrays=None):
        """Restart the average from the given arrays, step 0 (parameters kept)."""
        arrays = self._students(arrays, False)
        self._check(lib.kd_ema_reset(self._handle(), A.pointer_array(arrays)), "kd_ema_reset")

    def reset_flat(self, flat):
        flat = self._flat_arg(flat, False)
        self._check(lib.kd_ema_reset_flat(self._handle(), A.fptr(flat)), "kd_ema_reset_flat")

    # -- state file --
    def save(self, path):
        """Write the state to path (crash-safe: temp file, fsync, rename)."""
        self._check(lib.kd_ema_save(self._handle(), os.fsencode(path)), "kd_ema_save")

    def load(self, path):
        """Restore a state saved for the same arrays; nothing changes on error
        (KdIOError, KdVersionError, KdCorruptError, KdMismatchError)."""
        self._check(lib.kd_ema_load(self._handle(), os.fsencode(path)), "kd_ema_load")
