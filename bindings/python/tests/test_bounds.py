"""kdlib.Loss never lets Python code make C read or write past a NumPy array
(issue 16 point 7): every compute call checks n against every bound array,
and the integer conversion of index vectors never wraps (point 10).

Writes past an array are detected with sentinels: the bound array is a view
of the first rows of a larger buffer whose other rows hold NaN, so a call
that wrote past the view would change them.  Reads far past an array (the
segfault of forward(50_000_000)) run in a subprocess."""
import os
import subprocess
import sys
import textwrap
import unittest

import numpy as np

import kdlib

C = kdlib.losses_constants


def f32(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def sentinel_view(rows, total, c=None):
    """(view of the first `rows` rows, the whole NaN-filled buffer)."""
    base = np.full((total, c) if c else (total,), np.nan, np.float32)
    return base[:rows], base


class LossRowChecks(unittest.TestCase):
    def assert_refused(self, call, *names):
        with self.assertRaises(ValueError) as cm:
            call()
        self.assertNotIsInstance(cm.exception, kdlib.KdError, "refused by C, not by the binding")
        for name in names:
            self.assertIn(name, str(cm.exception))

    def test_issue_example_one_row_gradient(self):
        with kdlib.Loss(C.KL_DISTILL, 3) as h:
            h.bind_matrix(C.ARG_STUDENT, f32(4, 3))
            h.bind_matrix(C.ARG_TEACHER, f32(4, 3, seed=1))
            g, base = sentinel_view(1, 4, 3)
            h.bind_output(C.ARG_GRAD_STUDENT, g)
            self.assert_refused(lambda: h.forward_backward(4), "grad_student", "1 rows")
            self.assertTrue(np.all(np.isnan(base[1:])), "rows past the 1-row gradient were written")
            self.assert_refused(lambda: h.backward(4, 1.0), "grad_student")
            self.assertTrue(np.all(np.isnan(base[1:])))
            h.forward_backward(1)           # the rows that exist: accepted
            self.assertTrue(np.all(np.isfinite(base[0])) and np.all(np.isnan(base[1:])))

    def test_every_row_role_is_checked(self):
        n = 4
        s, t = f32(n, 3), f32(n, 3, seed=1)
        cases = []   # (kind, binder(h), the name in the message)
        cases.append((C.KL_DISTILL, lambda h: h.bind_matrix(C.ARG_STUDENT, s[:2]), "student"))
        cases.append((C.KL_DISTILL, lambda h: h.bind_matrix(C.ARG_TEACHER, t[:3]), "teacher"))
        cases.append((C.KL_DISTILL, lambda h: h.bind_teachers([t, t[:2], t]), "teacher[1]"))
        cases.append((C.CROSS_ENTROPY, lambda h: h.bind_matrix(C.ARG_TARGET, t[:1]), "target"))
        cases.append((C.KL_DISTILL, lambda h: h.bind_labels(np.zeros(2, np.int32)), "labels"))
        cases.append((C.KL_DISTILL, lambda h: h.bind_weights(np.ones(3, np.float32)), "weights"))
        cases.append((C.KL_DISTILL, lambda h: h.bind_vector(C.ARG_WEIGHTS, np.ones(1, np.float32)),
                      "weights has 1 values"))
        self._per_sample = sentinel_view(2, n)
        cases.append((C.KL_DISTILL, lambda h: h.bind_output(C.ARG_PER_SAMPLE, self._per_sample[0]),
                      "per_sample has 2 values"))
        for kind, bind, name in cases:
            with self.subTest(kind=kind, name=name), kdlib.Loss(kind, 3) as h:
                h.bind_matrix(C.ARG_STUDENT, s)
                if kind == C.KL_DISTILL:
                    h.bind_matrix(C.ARG_TEACHER, t)
                else:
                    h.bind_matrix(C.ARG_TARGET, t)
                    h.bind_labels(np.zeros(n, np.int32))
                bind(h)
                self.assert_refused(lambda: h.forward(n), name)
                self.assert_refused(lambda: h.forward_backward(n), name)
        self.assertTrue(np.all(np.isnan(self._per_sample[1][2:])))

    def test_thresholded_outputs(self):
        n = 5
        s, t = f32(n, 4), 5 * f32(n, 4, seed=1)
        mask, mbase = sentinel_view(3, n)
        labels_base = np.full(n, -7, np.int32)
        for kind in (C.PSEUDO_LABEL, C.STRONG_WEAK):
            with self.subTest(kind=kind), kdlib.Loss(kind, 4) as h:
                h.bind_matrix(C.ARG_STUDENT, s)
                h.bind_matrix(C.ARG_TEACHER, t)
                h.bind_output(C.ARG_MASK, mask, "mask")
                self.assert_refused(lambda: h.forward(n), "mask")
                self.assertTrue(np.all(np.isnan(mbase[3:])))
                h.bind_output(C.ARG_MASK, None)
                h.bind_output_labels(C.ARG_PSEUDO_LABELS, labels_base[:2])
                self.assert_refused(lambda: h.forward(n), "pseudo_labels")
                self.assertTrue(np.all(labels_base[2:] == -7))
                with self.assertRaisesRegex(ValueError, "class_thresholds.*4 values"):
                    h.bind_vector(C.ARG_CLASS_THRESHOLDS, [0.5, 0.5])   # C reads C values
                h.bind_output_labels(C.ARG_PSEUDO_LABELS, None)
                h.forward(n)

    def test_consistency_grad_teacher(self):
        g2, base = sentinel_view(2, 6, 3)
        with kdlib.Loss(C.CONSISTENCY, 3) as h:
            h.bind_matrix(C.ARG_STUDENT, f32(6, 3))
            h.bind_matrix(C.ARG_TEACHER, f32(6, 3, seed=1))
            h.bind_output(C.ARG_GRAD_TEACHER, g2, "grad_p2")
            self.assert_refused(lambda: h.forward_backward(6), "grad_p2")
            self.assertTrue(np.all(np.isnan(base[2:])))

    def test_worst_case_unlabeled_rows(self):
        nl, nu, c = 3, 5, 4
        gu, base = sentinel_view(nu, 8, c)
        with kdlib.Loss(C.WORST_CASE, c) as h:
            h.bind_matrix(C.ARG_LABELED_MAIN, f32(nl, c))
            h.bind_matrix(C.ARG_LABELED_ADV, f32(nl, c, seed=1))
            h.bind_matrix(C.ARG_UNLABELED_MAIN, f32(nu, c, seed=2))
            h.bind_matrix(C.ARG_UNLABELED_ADV, f32(nu, c, seed=3))
            h.bind_output(C.ARG_GRAD_UNLABELED_ADV, gu, "grad_u")
            # default KD_PARAM_UNLABELED_ROWS = -1: n rows, more than the labeled arrays
            self.assert_refused(lambda: h.forward_backward(nu + 1), "rows")
            h.set_int(C.PARAM_UNLABELED_ROWS, 8)
            self.assert_refused(lambda: h.forward_backward(nl), "unlabeled", "UNLABELED_ROWS")
            self.assertTrue(np.all(np.isnan(base[nu:])))
            h.set(C.PARAM_UNLABELED_ROWS, nu)
            h.forward_backward(nl)
            self.assertTrue(np.all(np.isfinite(base[:nu])) and np.all(np.isnan(base[nu:])))

    def test_batch_statistics_calls(self):
        g, base = sentinel_view(2, 4, 3)
        with kdlib.Loss(C.CLASS_BALANCE, 3) as h:
            h.bind_matrix(C.ARG_STUDENT, f32(4, 3))
            h.bind_output(C.ARG_GRAD_STUDENT, g)
            stats = h.local_stats(2)
            self.assert_refused(lambda: h.finish(4, stats), "grad_student")
            self.assertTrue(np.all(np.isnan(base[2:])))
            self.assert_refused(lambda: h.local_stats(5), "student")

    def test_n_type_and_range(self):
        with kdlib.Loss(C.MCC, 3) as h:
            h.bind_matrix(C.ARG_STUDENT, f32(4, 3))
            for bad in (-1, 2**63, -2**63):
                with self.subTest(n=bad):
                    self.assert_refused(lambda: h.forward(bad), "n must be in")
            with self.assertRaises(TypeError):
                h.forward(2.5)
            self.assertEqual(h.forward(np.int64(4)).shape, (1,))

    def test_output_buffers(self):
        with kdlib.Loss(C.KL_DISTILL, 3) as h:
            h.bind_matrix(C.ARG_STUDENT, f32(4, 3))
            h.bind_matrix(C.ARG_TEACHER, f32(4, 3, seed=1))
            ro = np.zeros(1, np.float32)
            ro.flags.writeable = False
            self.assert_refused(lambda: h.forward(4, out=ro), "writeable")
            with self.assertRaisesRegex(ValueError, "not an output role"):
                h.bind_output(C.ARG_STUDENT, np.zeros((4, 3), np.float32))
            with self.assertRaisesRegex(ValueError, "2-D"):
                h.bind_output(C.ARG_GRAD_STUDENT, np.zeros(12, np.float32))
            h.set(C.PARAM_REDUCTION, C.REDUCTION_NONE)
            self.assert_refused(lambda: h.forward(4, out=np.zeros(3, np.float32)), "4 values")

    def test_far_read_in_subprocess(self):
        """The issue's forward(50_000_000) on 4-row arrays (a segfault before)."""
        code = textwrap.dedent("""
            import numpy as np, kdlib
            C = kdlib.losses_constants
            s = np.zeros((4, 3), np.float32)
            for kind in (C.KL_DISTILL, C.CLASS_BALANCE, C.MCC):
                h = kdlib.Loss(kind, 3)
                h.bind_matrix(C.ARG_STUDENT, s)
                if kind == C.KL_DISTILL:
                    h.bind_matrix(C.ARG_TEACHER, s)
                for call in (h.forward, h.forward_backward):
                    try:
                        call(50000000)
                        print("accepted")
                    except ValueError as e:
                        print("refused", type(e).__name__)
            """)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + \
            os.pathsep + env.get("PYTHONPATH", "")
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                           timeout=120)
        self.assertEqual(p.returncode, 0, "subprocess died (%d): %s" % (p.returncode, p.stderr))
        self.assertEqual(p.stdout.split("\n")[:6], ["refused ValueError"] * 6)


class IndexConversion(unittest.TestCase):
    def test_uint64_2_63_does_not_wrap(self):
        from kdlib import _arrays as A
        for value in (2**63, 2**64 - 1):
            with self.subTest(value=value):
                with self.assertRaises(ValueError) as cm:
                    A.int_vector(np.array([1, value], np.uint64), "indices", None, np.int64)
                msg = str(cm.exception)
                self.assertIn("indices[1] = %d" % value, msg)
                self.assertNotIn("-", msg.split("range")[0])
        ok = A.int_vector(np.array([0, 2**63 - 1], np.uint64), "indices", None, np.int64)
        self.assertEqual(int(ok[1]), 2**63 - 1)
        with self.assertRaisesRegex(ValueError, r"labels\[0\] = 2147483648"):
            A.int_vector(np.array([2**31], np.uint64), "labels", 1)
        with self.assertRaisesRegex(ValueError, r"labels\[2\] = -2147483649"):
            A.int_vector(np.array([0, 1, -2**31 - 1], np.int64), "labels", 3)

    def test_flexmatch_indices_through_the_api(self):
        f = kdlib.FlexMatchThresholds(10, 3)
        with self.assertRaises(ValueError) as cm:
            f.update(np.array([2**63, 1], np.uint64), np.array([0.99, 0.99], np.float32),
                     np.array([1, 1]))
        self.assertIn("9223372036854775808", str(cm.exception))
        self.assertNotIn("= -9223372036854775808", str(cm.exception))


if __name__ == "__main__":
    unittest.main()
