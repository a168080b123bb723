"""Label tools against NumPy references of include/kdlib/labels.h."""
import unittest

import numpy as np

import kdlib


def softmax(z):
    e = np.exp(z - z.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


class Labels(unittest.TestCase):
    def setUp(self):
        self.rng = np.random.default_rng(21)

    def probs(self, n, c, sharp=3.0):
        return softmax(self.rng.standard_normal((n, c)) * sharp).astype(np.float32)

    def test_select_pseudo_labels(self):
        p = self.probs(100, 5)
        r = kdlib.select_pseudo_labels(p, 0.7)
        np.testing.assert_array_equal(r.pseudo_labels, p.argmax(1))
        np.testing.assert_array_equal(r.confidence, p.max(1))
        np.testing.assert_array_equal(r.mask, (p.max(1) > np.float32(0.7)).astype(np.float32))
        self.assertEqual(r.num_selected, int(r.mask.sum()))
        z = (self.rng.standard_normal((30, 4)) * 3).astype(np.float32)
        r = kdlib.select_pseudo_labels(z[:, :], 0.6, logits=True)
        np.testing.assert_allclose(r.confidence, softmax(z.astype(np.float64)).max(1), rtol=1e-5)
        # top-k per class keeps the most confident selected rows of each class
        r = kdlib.select_pseudo_labels(p, 0.5, top_k_per_class=3)
        full = kdlib.select_pseudo_labels(p, 0.5)
        for k in range(5):
            rows = np.where((full.mask == 1) & (full.pseudo_labels == k))[0]
            keep = rows[np.argsort(-p[rows].max(1), kind="stable")[:3]]
            np.testing.assert_array_equal(np.where((r.mask == 1) & (r.pseudo_labels == k))[0],
                                          np.sort(keep))
        ct = np.linspace(0.3, 0.9, 5).astype(np.float32)
        r = kdlib.select_pseudo_labels(p, class_thresholds=ct, inclusive=True)
        np.testing.assert_array_equal(r.mask, (p.max(1) >= ct[p.argmax(1)]).astype(np.float32))
        bad = p.copy()
        bad[0, 0] = np.nan
        with self.assertRaises(kdlib.KdNotFiniteError):
            kdlib.select_pseudo_labels(bad)
        with self.assertRaisesRegex(kdlib.KdInvalidArgumentError, "kd_select_pseudo_labels"):
            kdlib.select_pseudo_labels(p * 3)

    def test_label_quality_and_issues(self):
        n, c = 120, 4
        p = self.probs(n, c)
        y = p.argmax(1).astype(np.int32)
        flip = self.rng.choice(n, 15, replace=False)
        y[flip] = (y[flip] + 1) % c
        y[:3] = -100
        for kind in ("self_confidence", "normalized_margin", "margin"):
            r = kdlib.label_quality(p, y, kind)
            lab = y != -100
            sc = np.full(n, np.nan, np.float32)
            rows = np.where(lab)[0]
            pyy = p[rows, y[rows]]
            other = p[rows].copy()
            other[np.arange(len(rows)), y[rows]] = -np.inf
            m = other.max(1)
            sc[rows] = {"self_confidence": pyy, "normalized_margin": (pyy - m + 1) / 2,
                        "margin": pyy - m}[kind]
            np.testing.assert_allclose(r.scores, sc, rtol=1e-6, atol=1e-7)
            self.assertEqual(r.num_ranked, lab.sum())
            order = rows[np.argsort(sc[rows], kind="stable")]
            np.testing.assert_array_equal(r.ranking[:r.num_ranked], order)
            np.testing.assert_array_equal(r.ranking[r.num_ranked:], np.where(~lab)[0])
        r = kdlib.find_label_issues(p, y)
        t = np.array([p[y == k, k].astype(np.float64).mean() for k in range(c)], np.float32)
        np.testing.assert_allclose(r.class_thresholds, t, rtol=1e-6)
        conf_cls = np.full(n, -1)
        for i in range(n):
            ok = np.where(p[i] >= t)[0]
            if len(ok):
                conf_cls[i] = ok[np.argmax(p[i, ok])]
        np.testing.assert_array_equal(r.confident_class, conf_cls)
        sus = (y != -100) & (conf_cls >= 0) & (conf_cls != y)
        np.testing.assert_array_equal(r.suspect, sus)
        self.assertEqual(r.num_suspects, sus.sum())
        self.assertEqual(set(r.issues), set(np.where(sus)[0]))
        self.assertGreater(len(set(r.issues) & set(flip)), 5)
        with self.assertRaisesRegex(kdlib.KdInvalidArgumentError, "ignore_index"):
            kdlib.label_quality(p, y, ignore_index=1)

    def test_soft_labels_and_ensemble(self):
        n, c = 20, 6
        p = self.probs(n, c)
        y = self.rng.integers(0, c, n).astype(np.int32)
        y[0] = -100
        eye = np.eye(c, dtype=np.float32)
        q = kdlib.soft_labels(y, 0.7, p, mode="probabilities")
        ref = np.float32(0.7) * eye[np.maximum(y, 0)] + np.float32(0.3) * p
        ref[0] = p[0]
        np.testing.assert_allclose(q, ref, rtol=1e-6, atol=1e-7)
        q = kdlib.soft_labels(y, 0.7, p)
        ref = np.float32(0.7) * eye[np.maximum(y, 0)] + np.float32(0.3) * eye[p.argmax(1)]
        ref[0] = eye[p[0].argmax()]
        np.testing.assert_allclose(q, ref, rtol=1e-6, atol=1e-7)
        pred = self.rng.integers(0, c, n)
        q = kdlib.soft_labels(y, 0.5, predictions=pred, num_classes=c)
        self.assertEqual(q.shape, (n, c))
        np.testing.assert_allclose(q[1:].sum(1), 1.0, rtol=1e-6)
        xs = [(self.rng.standard_normal((n, c + 2)).astype(np.float32))[:, :c] for _ in range(3)]
        out = kdlib.ensemble_average(xs, [1, 2, 1])
        np.testing.assert_allclose(out, (xs[0] + 2 * xs[1] + xs[2]) / 4, rtol=1e-5, atol=1e-6)
        out = kdlib.ensemble_average(xs)
        np.testing.assert_allclose(out, sum(xs) / 3, rtol=1e-5, atol=1e-6)
        with self.assertRaisesRegex(ValueError, r"inputs\[1\] must have shape"):
            kdlib.ensemble_average([xs[0], xs[1][:3]])
        with self.assertRaises(kdlib.KdInvalidArgumentError):
            kdlib.ensemble_average(xs, [0, 0, 0])


if __name__ == "__main__":
    unittest.main()
