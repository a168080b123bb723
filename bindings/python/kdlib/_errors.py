"""Exceptions: one class per kd_status, all derived from KdError.

Each class also derives from the matching built-in exception, so that code
catching ValueError / MemoryError / OSError keeps working:

    status                    class                 also a
    KD_ERR_NULL_POINTER  1    KdNullPointerError    ValueError
    KD_ERR_INVALID_ARGUMENT 2 KdInvalidArgumentError ValueError
    KD_ERR_SHAPE         3    KdShapeError          ValueError
    KD_ERR_UNSUPPORTED   4    KdUnsupportedError    ValueError
    KD_ERR_MISSING_INPUT 5    KdMissingInputError   ValueError
    KD_ERR_OUT_OF_MEMORY 6    KdOutOfMemoryError    MemoryError
    KD_ERR_NOT_FINITE    7    KdNotFiniteError      ValueError
    KD_ERR_ALIASING      8    KdAliasingError       ValueError
    KD_ERR_IO            9    KdIOError             OSError
    KD_ERR_CORRUPT      10    KdCorruptError        ValueError
    KD_ERR_VERSION      11    KdVersionError        ValueError
    KD_ERR_MISMATCH     12    KdMismatchError       ValueError
    KD_ERR_STATE        13    KdStateError          RuntimeError
"""


class KdError(Exception):
    """A kdlib C call failed.

    Attributes: status (the int kd_status), status_string (kd_status_string),
    function (the C function), c_message (the handle's last-error message).
    """

    status = None

    function = ""
    c_message = ""
    status_string = ""


def _make(name, status, base, doc):
    return type(name, (KdError, base), {"status": status, "__doc__": doc})


KdNullPointerError = _make("KdNullPointerError", 1, ValueError, "KD_ERR_NULL_POINTER")
KdInvalidArgumentError = _make("KdInvalidArgumentError", 2, ValueError, "KD_ERR_INVALID_ARGUMENT")
KdShapeError = _make("KdShapeError", 3, ValueError, "KD_ERR_SHAPE")
KdUnsupportedError = _make("KdUnsupportedError", 4, ValueError, "KD_ERR_UNSUPPORTED")
KdMissingInputError = _make("KdMissingInputError", 5, ValueError, "KD_ERR_MISSING_INPUT")
KdOutOfMemoryError = _make("KdOutOfMemoryError", 6, MemoryError, "KD_ERR_OUT_OF_MEMORY")
KdNotFiniteError = _make("KdNotFiniteError", 7, ValueError, "KD_ERR_NOT_FINITE")
KdAliasingError = _make("KdAliasingError", 8, ValueError, "KD_ERR_ALIASING")
KdIOError = _make("KdIOError", 9, OSError, "KD_ERR_IO")
KdCorruptError = _make("KdCorruptError", 10, ValueError, "KD_ERR_CORRUPT")
KdVersionError = _make("KdVersionError", 11, ValueError, "KD_ERR_VERSION")
KdMismatchError = _make("KdMismatchError", 12, ValueError, "KD_ERR_MISMATCH")
KdStateError = _make("KdStateError", 13, RuntimeError, "KD_ERR_STATE")

STATUS_CLASSES = {cls.status: cls for cls in (
    KdNullPointerError, KdInvalidArgumentError, KdShapeError, KdUnsupportedError,
    KdMissingInputError, KdOutOfMemoryError, KdNotFiniteError, KdAliasingError, KdIOError,
    KdCorruptError, KdVersionError, KdMismatchError, KdStateError)}


def error_for_status(status, function, c_message, status_string):
    cls = STATUS_CLASSES.get(status, KdError)
    detail = c_message or status_string
    text = detail if detail.startswith(function) else "%s: %s" % (function, detail)
    if c_message:
        text += " [%s]" % status_string
    exc = cls(text)
    exc.status = status
    exc.function = function
    exc.c_message = c_message
    exc.status_string = status_string
    return exc
