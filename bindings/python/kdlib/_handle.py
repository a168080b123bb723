"""Handle: the base of the classes that own a C handle (kd_loss, kd_ema,
kd_threshold): ownership, close / __del__ / context manager, last-error
messages turned into exceptions, int and float parameters."""
import ctypes

from ._lib import lib, raise_for_status


class Handle:
    """A subclass sets _prefix (the C prefix, "kd_loss") and _closed_message;
    _int_type / _float_type are the out types of its get_int / get_float."""

    _prefix = None
    _closed_message = "the handle is closed"
    _int_type = ctypes.c_int64
    _float_type = ctypes.c_double
    _h = None
    _closed = False

    def _c(self, name):
        return getattr(lib, "%s_%s" % (self._prefix, name))

    def _adopt(self, st, h, message=None):
        """Keep h from _create; on failure raise with message (default: the
        thread's create message, last_error(NULL))."""
        if st:
            if message is None:
                message = (self._c("last_error")(None) or b"").decode()
            raise_for_status(st, self._prefix + "_create", message)
        self._h = h

    # -- life cycle --
    def _destroy(self):
        h = self._h
        self._h = None
        if h:
            self._c("destroy")(h)

    def close(self):
        """Destroy the handle; idempotent."""
        self._destroy()

    def __del__(self):
        self._destroy()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _handle(self):
        if not self._h or self._closed:
            raise ValueError(self._closed_message)
        return self._h

    # -- errors --
    @property
    def last_error(self):
        return (self._c("last_error")(self._h) or b"").decode()

    def _check(self, st, function):
        if st:
            raise_for_status(st, function, self.last_error)

    # -- parameters --
    def _get(self, suffix, ctype, param):
        v = ctype()
        fn = "%s_get_%s" % (self._prefix, suffix)
        self._check(getattr(lib, fn)(self._handle(), int(param), ctypes.byref(v)), fn)
        return v.value

    def _set(self, suffix, param, value):
        fn = "%s_set_%s" % (self._prefix, suffix)
        self._check(getattr(lib, fn)(self._handle(), int(param), value), fn)

    def _get_int(self, param):
        return self._get("int", self._int_type, param)

    def _set_int(self, param, value):
        self._set("int", param, int(value))

    def _get_float(self, param):
        return self._get("float", self._float_type, param)

    def _set_float(self, param, value):
        self._set("float", param, float(value))
