"""Prototypes, library loading, bad input (dtype, shape, strides), the NaN
policy and the mapping of every C status to a Python exception."""
import ctypes
import glob
import os
import re
import subprocess
import sys
import tempfile
import unittest

import numpy as np

import kdlib
from kdlib import _lib
from kdlib import _errors

HERE = os.path.dirname(os.path.abspath(__file__))
HEADERS = os.path.join(HERE, "..", "..", "..", "include", "kdlib")


def f32(*shape):
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32)


class Prototypes(unittest.TestCase):
    @unittest.skipUnless(os.path.isdir(HEADERS), "public headers not found")
    def test_every_header_function_has_argtypes_and_restype(self):
        declared = set()
        for path in glob.glob(os.path.join(HEADERS, "*.h")):
            with open(path) as f:
                text = f.read()
            declared |= set(re.findall(r"KD_API\b[^;(]*?\b(kd_\w+)\s*\(", text))
        self.assertGreater(len(declared), 60)
        self.assertEqual(declared - set(_lib.PROTOTYPES), set(), "functions without a prototype")
        self.assertEqual(set(_lib.PROTOTYPES) - declared, set(), "prototypes of unknown functions")
        for name, (restype, argtypes) in _lib.PROTOTYPES.items():
            fn = getattr(_lib.lib, name)
            self.assertEqual(fn.argtypes, argtypes, name)
            self.assertIs(fn.restype, restype, name)

    def test_pointer_arguments_are_typed(self):
        # no bare int for a pointer: every pointer argument is a ctypes POINTER or c_char_p
        for name, (restype, argtypes) in _lib.PROTOTYPES.items():
            for a in argtypes:
                self.assertTrue(a in (ctypes.c_int32, ctypes.c_int64, ctypes.c_float, ctypes.c_double,
                                      ctypes.c_size_t, ctypes.c_char_p)
                                or hasattr(a, "_type_") and issubclass(a, ctypes._Pointer),
                                "%s: %r" % (name, a))

    def test_version(self):
        self.assertEqual(kdlib.library_version // 10000, _lib.BINDING_VERSION_MAJOR)
        self.assertEqual(kdlib.version(), "%d.%d.%d" % (kdlib.library_version // 10000,
                                                       kdlib.library_version // 100 % 100,
                                                       kdlib.library_version % 100))

    def test_status_strings(self):
        self.assertEqual(kdlib.status_string(0), _lib.lib.kd_status_string(0).decode())
        self.assertEqual(kdlib.status_string(12345), "unknown status")
        for status in range(1, 14):
            self.assertIn(status, _errors.STATUS_CLASSES)

    def test_loader_error_names_the_path(self):
        env = dict(os.environ, KDLIB_LIBRARY="/nonexistent/libkd.so")
        top = os.path.dirname(HERE)
        p = subprocess.run([sys.executable, "-c", "import kdlib"], cwd=top, env=env,
                           capture_output=True, text=True)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("ImportError", p.stderr)
        self.assertIn("/nonexistent/libkd.so", p.stderr)


class BadInput(unittest.TestCase):
    def test_dtype(self):
        s = f32(4, 3)
        with self.assertRaisesRegex(TypeError, "student must be a numpy.ndarray of float32.*float64"):
            kdlib.kl_distill(s.astype(np.float64), s)
        with self.assertRaisesRegex(TypeError, "teacher"):
            kdlib.kl_distill(s, s.tolist())
        with self.assertRaisesRegex(TypeError, "labels must be an integer array"):
            kdlib.cross_entropy(s, np.zeros(4, np.float32))
        with self.assertRaisesRegex(TypeError, "float32"):
            kdlib.cross_entropy(s.astype(">f4"), [0, 1, 2, 0])
        with self.assertRaisesRegex(TypeError, "weights"):
            kdlib.cross_entropy(s, [0, 1, 2, 0], weights=np.ones(4))

    def test_shapes(self):
        s = f32(4, 3)
        with self.assertRaisesRegex(ValueError, "student must be 2-D"):
            kdlib.kl_distill(s.ravel(), s)
        with self.assertRaisesRegex(ValueError, r"teacher must have shape \(4, 3\)"):
            kdlib.kl_distill(s, f32(4, 5))
        with self.assertRaisesRegex(ValueError, "labels must have 4 values"):
            kdlib.cross_entropy(s, [0, 1])
        with self.assertRaisesRegex(ValueError, "class_thresholds must have 3 values"):
            kdlib.pseudo_label(s, s, class_thresholds=[0.5, 0.5])
        with self.assertRaisesRegex(ValueError, "y_u_adv"):
            kdlib.worst_case_estimation(s, s, s, f32(3, 3))
        with self.assertRaisesRegex(ValueError, "at least one column"):
            kdlib.class_balance(np.zeros((3, 0), np.float32), "logits")
        # int64 labels are bound in place (kd_loss_bind_labels64): libkd refuses
        # the value beyond int32 itself, never truncated; uint64 is range-checked here
        with self.assertRaisesRegex(ValueError, r"labels\[3\] = 1099511627776 outside \[0, 3\)"):
            kdlib.cross_entropy(s, np.array([0, 1, 2, 2**40], np.int64))
        with self.assertRaisesRegex(ValueError, r"labels\[3\] = 1099511627776 is outside the int32 range"):
            kdlib.cross_entropy(s, np.array([0, 1, 2, 2**40], np.uint64))

    def test_strides(self):
        s = f32(6, 8)
        with self.assertRaisesRegex(ValueError, "logits must have contiguous rows"):
            kdlib.class_balance(s[:, ::2], "logits")
        with self.assertRaisesRegex(ValueError, "contiguous rows"):
            kdlib.class_balance(np.asfortranarray(s), "logits")
        with self.assertRaisesRegex(ValueError, "row stride"):
            kdlib.class_balance(s[::-1], "logits")
        # row-strided views are accepted without a copy, one row too
        self.assertTrue(np.isfinite(kdlib.class_balance(s[::2, 1:5], "logits").loss))
        self.assertTrue(np.isfinite(kdlib.class_balance(s[1:2], "logits").loss))
        self.assertEqual(kdlib.class_balance(s[:0], "logits").loss, 0.0)

    def test_options(self):
        s = f32(4, 3)
        with self.assertRaisesRegex(ValueError, "reduction must be one of"):
            kdlib.cross_entropy(s, [0, 1, 2, 0], reduction="avg")
        with self.assertRaisesRegex(ValueError, "reduction must be one of 'batchmean'"):
            kdlib.kl_distill(s, s, reduction="mean")
        with self.assertRaisesRegex(ValueError, "distance"):
            kdlib.consistency(s, s, distance="cosine")
        with self.assertRaisesRegex(ValueError, "exactly one of target_probs and teacher"):
            kdlib.soft_cross_entropy(s)


class CStatus(unittest.TestCase):
    def test_invalid_argument_carries_c_message(self):
        s = f32(4, 3)
        with self.assertRaises(kdlib.KdInvalidArgumentError) as cm:
            kdlib.cross_entropy(s, [0, 1, 7, 0])
        e = cm.exception
        self.assertIsInstance(e, ValueError)
        self.assertIsInstance(e, kdlib.KdError)
        self.assertEqual(e.status, 2)
        self.assertIn("labels[2] = 7", str(e))
        self.assertIn("labels[2] = 7", e.c_message)
        self.assertEqual(e.status_string, kdlib.status_string(2))
        with self.assertRaisesRegex(kdlib.KdInvalidArgumentError, "(?i)temperature"):
            kdlib.kl_distill(s, s, temperature=0.0)
        with self.assertRaisesRegex(kdlib.KdInvalidArgumentError, "(?i)threshold"):
            kdlib.pseudo_label(s, s, threshold=1.5)
        with self.assertRaisesRegex(kdlib.KdInvalidArgumentError, "weight"):
            kdlib.cross_entropy(s, [0, 1, 2, 0], weights=np.array([1, -1, 1, 1], np.float32))

    def test_nan_policy(self):
        s = f32(4, 3)
        s[1, 2] = np.nan
        r = kdlib.kl_distill(s, f32(4, 3), reduction="none")
        self.assertTrue(np.isnan(r.loss[1]) and np.all(np.isfinite(r.loss[[0, 2, 3]])))
        with self.assertRaises(kdlib.KdNotFiniteError) as cm:
            kdlib.kl_distill(s, f32(4, 3), check_finite=True)
        self.assertEqual(cm.exception.status, 7)
        self.assertIsInstance(cm.exception, ValueError)
        self.assertIn("student[1][2]", str(cm.exception))
        t = f32(4, 3)
        t[0, 0] = np.inf
        with self.assertRaisesRegex(kdlib.KdNotFiniteError, r"teacher\[0\]\[0\]"):
            kdlib.pseudo_label(f32(4, 3), t, check_finite=True)

    def test_low_level_statuses(self):
        C = kdlib.losses_constants
        with self.assertRaises(kdlib.KdInvalidArgumentError):
            kdlib.Loss(999, 3)
        with self.assertRaises(kdlib.KdInvalidArgumentError):
            kdlib.Loss(C.KL_DISTILL, 0)
        with kdlib.Loss(C.MCC, 3) as h:
            with self.assertRaises(kdlib.KdUnsupportedError) as cm:
                h.set(C.PARAM_ALPHA, 0.5)
            self.assertIn("alpha", str(cm.exception).lower())
            with self.assertRaises(kdlib.KdMissingInputError):
                h.forward(2)
            s = f32(2, 3)
            h.bind_matrix(C.ARG_STUDENT, s)
            with self.assertRaises(kdlib.KdMissingInputError):
                h.backward(2, 1.0)
            with self.assertRaises(kdlib.KdUnsupportedError):
                h.bind_weights(np.ones(2, np.float32))
            with self.assertRaises(kdlib.KdUnsupportedError):
                kdlib.param_bounds(C.MCC, C.PARAM_ALPHA)
        with kdlib.Loss(C.CROSS_ENTROPY, 3) as h:
            s = f32(2, 3)
            h.bind_matrix(C.ARG_STUDENT, s)
            h.bind_labels([0, 1])
            g = s[:, :]              # the gradient in place over the student: allowed
            h.bind_output(C.ARG_GRAD_STUDENT, g)
            h.forward_backward(2)
            t = f32(2, 3)
            h.bind_matrix(C.ARG_STUDENT, t)
            h.bind_output(C.ARG_GRAD_STUDENT, np.ascontiguousarray(t.ravel()[1:].tolist() + [0.0],
                                                                   dtype=np.float32).reshape(2, 3))
            h.forward_backward(2)
            per = t.ravel()[:2]     # a per-sample output overlapping the student: refused
            h.bind_output(C.ARG_PER_SAMPLE, per)
            with self.assertRaises(kdlib.KdAliasingError):
                h.forward(2)
        h.close()
        with self.assertRaisesRegex(ValueError, "closed"):
            h.forward(1)

    def test_state_file_errors(self):
        a = f32(10)
        with tempfile.TemporaryDirectory() as d:
            ema = kdlib.EMATeacher([a])
            with self.assertRaises(kdlib.KdIOError) as cm:
                ema.load(os.path.join(d, "missing.kdema"))
            self.assertIsInstance(cm.exception, OSError)
            self.assertIn("missing.kdema", str(cm.exception))
            junk = os.path.join(d, "junk")
            with open(junk, "wb") as f:
                f.write(b"not a state file at all" * 10)
            with self.assertRaises((kdlib.KdVersionError, kdlib.KdCorruptError)):
                ema.load(junk)
            path = os.path.join(d, "t.kdema")
            ema.save(path)
            other = kdlib.EMATeacher([f32(11)])
            with self.assertRaisesRegex(kdlib.KdMismatchError, "length"):
                other.load(path)
            with open(path, "rb") as f:
                data = bytearray(f.read())
            data[-3] ^= 0xFF
            with open(path, "wb") as f:
                f.write(data)
            with self.assertRaises(kdlib.KdCorruptError):
                ema.load(path)
            with open(path, "wb") as f:
                f.write(data[:len(data) // 2])
            with self.assertRaises(kdlib.KdCorruptError):
                ema.load(path)
            with self.assertRaises(kdlib.KdIOError):
                ema.save(os.path.join(d, "no", "such", "dir", "x"))

    def test_create_errors_use_thread_message(self):
        with self.assertRaisesRegex(kdlib.KdInvalidArgumentError, "num_samples|N"):
            kdlib.FlexMatchThresholds(0, 3)
        with self.assertRaisesRegex(ValueError, r"kinds\[0\]"):
            kdlib.EMATeacher([f32(3)], kinds=[5])


if __name__ == "__main__":
    unittest.main()
