"""kdlib's cleanlab-compatible functions (kdlib.find_label_issues,
get_label_quality_scores, estimate_py_and_noise_matrices_from_probabilities,
...) against the golden outputs of the real cleanlab 2.9.0
(tests/data/cleanlab_fixtures.txt), and against cleanlab itself when it can be
imported (it is not needed)."""
import inspect
import os
import unittest
import warnings

import numpy as np

import kdlib

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "..", "..", "tests", "data", "cleanlab_fixtures.txt")
FILTERS = ["prune_by_noise_rate", "prune_by_class", "both", "confident_learning",
           "predicted_neq_given", "low_normalized_margin", "low_self_confidence"]
SCORES = ["self_confidence", "normalized_margin", None, "confidence_weighted_entropy"]

try:
    import cleanlab.count as cl_count
    import cleanlab.filter as cl_filter
    import cleanlab.rank as cl_rank
except Exception:  # not installed: the fixture is the reference
    cl_count = cl_filter = cl_rank = None


def load_cases():
    cases, cur = [], None
    with open(FIXTURES) as f:
        for line in f:
            parts = line.split()
            if not parts or parts[0].startswith("#"):
                continue
            key, vals = parts[0], parts[1:]
            if key == "case":
                cur = {"name": vals[0], "n": int(vals[1]), "c": int(vals[2]), "rec": []}
                cases.append(cur)
            elif key == "end":
                cur = None
            elif key == "labels":
                cur["labels"] = np.array([int(v) for v in vals], np.int64)
            elif key == "probs":
                cur["probs"] = np.array([float(v) for v in vals], np.float64).reshape(
                    cur["n"], cur["c"]).astype(np.float32)
            else:
                cur["rec"].append((key, np.array([float(v) for v in vals], np.float64)))
    return cases


CASES = load_cases()


def issue_records(case):
    """(filter_by, frac, min, ntr or None, rank_by or None, adjust, indices)."""
    c = case["c"]
    for key, v in case["rec"]:
        if key != "issues":
            continue
        at = 3
        ntr = None
        if v[at] != 0:
            ntr = [int(x) for x in v[at + 1:at + 1 + c]]
            at += c
        at += 1
        rank, adj, k = int(v[at]), int(v[at + 1]), int(v[at + 2])
        idx = v[at + 3:at + 3 + k].astype(np.int64)
        yield (FILTERS[int(v[0])], float(v[1]), int(v[2]), ntr,
               None if rank < 0 else SCORES[rank], bool(adj), idx)


class Signatures(unittest.TestCase):
    def test_names_order_and_defaults_are_cleanlabs(self):
        want = {
            kdlib.find_label_issues: [("return_indices_ranked_by", None),
                                      ("rank_by_kwargs", None),
                                      ("filter_by", "prune_by_noise_rate"), ("frac_noise", 1.0),
                                      ("num_to_remove_per_class", None),
                                      ("min_examples_per_class", 1), ("confident_joint", None),
                                      ("n_jobs", None), ("verbose", False),
                                      ("multi_label", False)],
            kdlib.get_label_quality_scores: [("method", "self_confidence"),
                                             ("adjust_pred_probs", False)],
            kdlib.estimate_py_and_noise_matrices_from_probabilities: [
                ("thresholds", None), ("converge_latent_estimates", True), ("py_method", "cnt"),
                ("calibrate", True)],
            kdlib.num_label_issues: [("confident_joint", None),
                                     ("estimation_method", "off_diagonal"),
                                     ("multi_label", False)],
            kdlib.compute_confident_joint: [("thresholds", None), ("calibrate", True),
                                            ("multi_label", False),
                                            ("return_indices_of_off_diagonals", False)],
        }
        for fn, kw in want.items():
            params = list(inspect.signature(fn).parameters.values())
            self.assertEqual([p.name for p in params[:2]], ["labels", "pred_probs"], fn.__name__)
            kwonly = [(p.name, p.default) for p in params if p.kind == p.KEYWORD_ONLY]
            self.assertEqual(kwonly[:len(kw)], kw, fn.__name__)


class AgainstFixtures(unittest.TestCase):
    def test_find_label_issues_every_filter_and_ranking(self):
        checked, per_filter = 0, dict.fromkeys(FILTERS, 0)
        for case in CASES:
            y, p = case["labels"], case["probs"]
            for fb, frac, mn, ntr, rank, adj, idx in issue_records(case):
                kw = dict(filter_by=fb, frac_noise=frac, min_examples_per_class=mn,
                          num_to_remove_per_class=ntr)
                if rank is not None:
                    got = kdlib.find_label_issues(y, p.astype(np.float64),
                                                  return_indices_ranked_by=rank,
                                                  rank_by_kwargs={"adjust_pred_probs": adj},
                                                  **kw)
                    np.testing.assert_array_equal(got, idx, "%s %s %s" % (case["name"], fb, rank))
                else:
                    got = kdlib.find_label_issues(y, p, **kw)
                    self.assertEqual(got.dtype, np.bool_)
                    np.testing.assert_array_equal(np.flatnonzero(got), idx,
                                                  "%s %s %r" % (case["name"], fb, kw))
                per_filter[fb] += 1
                checked += 1
        self.assertGreater(checked, 1000)
        for fb in FILTERS:
            self.assertGreaterEqual(per_filter[fb], 10, fb)

    def test_scores_noise_matrices_joint_and_counts(self):
        for case in CASES:
            y, p, c = case["labels"], case["probs"], case["c"]
            for key, v in case["rec"]:
                if key == "scores":
                    s = kdlib.get_label_quality_scores(y, p, method=SCORES[int(v[0])],
                                                       adjust_pred_probs=bool(v[1]))
                    np.testing.assert_allclose(s, v[2:], rtol=0, atol=1e-12)
                elif key == "latent":
                    flags = int(v[0])
                    py, nm, inv, cj = kdlib.estimate_py_and_noise_matrices_from_probabilities(
                        y, p, calibrate=bool(flags & 1), converge_latent_estimates=bool(flags & 2))
                    cc = c * c
                    np.testing.assert_allclose(py, v[1:1 + c], atol=1e-6)
                    np.testing.assert_allclose(nm.ravel(), v[1 + c:1 + c + cc], atol=1e-6)
                    np.testing.assert_allclose(inv.ravel(), v[1 + c + cc:1 + c + 2 * cc],
                                               atol=1e-6)
                    np.testing.assert_array_equal(cj.ravel(), v[1 + c + 2 * cc:])
                elif key == "thresholds":
                    np.testing.assert_array_equal(kdlib.get_confident_thresholds(y, p), v)
                elif key == "cj":
                    cj = kdlib.compute_confident_joint(y, p, calibrate=bool(v[0]))
                    np.testing.assert_array_equal(cj.ravel(), v[1:])
                elif key == "offdiag":
                    _, off = kdlib.compute_confident_joint(y, p, calibrate=False,
                                                           return_indices_of_off_diagonals=True)
                    np.testing.assert_array_equal(off, v[1:])
                elif key == "joint":
                    np.testing.assert_allclose(kdlib.estimate_joint(y, p).ravel(), v, atol=1e-12)
                elif key == "customjoint":
                    custom = v[:c * c].reshape(c, c).astype(np.int64)
                    np.testing.assert_allclose(
                        kdlib.estimate_joint(y, p, confident_joint=custom).ravel(), v[c * c:],
                        atol=1e-12)
                elif key == "numissues":
                    method = ["off_diagonal", "off_diagonal_calibrated"][int(v[0])]
                    self.assertEqual(kdlib.num_label_issues(y, p, estimation_method=method),
                                     int(v[1]))
                elif key == "numcustom":
                    custom = v[:c * c].reshape(c, c).astype(np.int64)
                    self.assertEqual(kdlib.num_label_issues(
                        y, p, confident_joint=custom, estimation_method="off_diagonal_custom"),
                        int(v[c * c]))


@unittest.skipIf(cl_filter is None, "cleanlab is not importable")
class AgainstCleanlab(unittest.TestCase):
    """Fresh random inputs, compared with the installed cleanlab (float32
    values passed to both)."""

    def test_random_inputs(self):
        rng = np.random.default_rng(5)
        for n, c in ((300, 3), (800, 7)):
            z = rng.normal(0, 2.5, (n, c))
            p = np.exp(z - z.max(1, keepdims=True))
            p = (p / p.sum(1, keepdims=True)).astype(np.float32)
            y = np.array([rng.choice(c, p=r / r.sum()) for r in p.astype(np.float64)])
            flip = rng.random(n) < 0.3
            y[flip] = rng.integers(0, c, flip.sum())
            p64 = p.astype(np.float64)
            for fb in FILTERS:
                np.testing.assert_array_equal(kdlib.find_label_issues(y, p, filter_by=fb),
                                              cl_filter.find_label_issues(y, p64, filter_by=fb),
                                              fb)
            for m in ("self_confidence", "normalized_margin", "confidence_weighted_entropy"):
                np.testing.assert_allclose(kdlib.get_label_quality_scores(y, p, method=m),
                                           cl_rank.get_label_quality_scores(y, p64, method=m),
                                           atol=1e-12)
            for a, b in zip(kdlib.estimate_py_and_noise_matrices_from_probabilities(y, p),
                            cl_count.estimate_py_and_noise_matrices_from_probabilities(y, p64)):
                np.testing.assert_allclose(a, b, atol=1e-6)


class Behaviour(unittest.TestCase):
    def setUp(self):
        case = CASES[0]
        self.y, self.p = case["labels"], case["probs"]

    def test_old_call_still_works_with_a_deprecation_warning(self):
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            old = kdlib.find_label_issues(self.p, self.y.astype(np.int32))
        self.assertTrue(any(issubclass(x.category, DeprecationWarning) for x in w))
        new = kdlib.confident_learning_suspects(self.p, self.y.astype(np.int32))
        np.testing.assert_array_equal(old.suspect, new.suspect)
        np.testing.assert_array_equal(old.issues, new.issues)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            kw = kdlib.find_label_issues(probs=self.p, labels=self.y, ignore_index=-100)
        np.testing.assert_array_equal(kw.suspect, new.suspect)

    def test_ignored_rows_are_never_issues(self):
        y = self.y.copy()
        y[::5] = -100
        mask = kdlib.find_label_issues(y, self.p, filter_by="predicted_neq_given")
        self.assertFalse(mask[::5].any())
        keep = y != -100
        np.testing.assert_array_equal(
            mask[keep], kdlib.find_label_issues(y[keep], self.p[keep],
                                                filter_by="predicted_neq_given"))
        s = kdlib.get_label_quality_scores(y, self.p)
        self.assertTrue(np.isnan(s[::5]).all())

    def test_errors(self):
        y, p = self.y, self.p
        with self.assertRaisesRegex(ValueError, "filter_by"):
            kdlib.find_label_issues(y, p, filter_by="nope")
        with self.assertRaisesRegex(ValueError, "return_indices_ranked_by"):
            kdlib.find_label_issues(y, p, return_indices_ranked_by="margin")
        with self.assertRaisesRegex(TypeError, "unexpected keyword"):
            kdlib.find_label_issues(y, p, return_indices_ranked_by="self_confidence",
                                    rank_by_kwargs={"foo": 1})
        with self.assertRaisesRegex(kdlib.KdInvalidArgumentError, "frac_noise"):
            kdlib.find_label_issues(y, p, frac_noise=2.0)
        with self.assertRaisesRegex(kdlib.KdInvalidArgumentError, "num_to_remove_per_class"):
            kdlib.find_label_issues(y, p, filter_by="confident_learning",
                                    num_to_remove_per_class=[1, 1, 1])
        with self.assertRaises(NotImplementedError):
            kdlib.find_label_issues(y, p, multi_label=True)
        with self.assertRaises(NotImplementedError):
            kdlib.find_label_issues(y, p, confident_joint=np.eye(3, dtype=np.int64))
        with self.assertRaises(NotImplementedError):
            kdlib.estimate_py_and_noise_matrices_from_probabilities(y, p, py_method="marginal")
        bad = p.copy()
        bad[3, 1] = np.nan
        with self.assertRaises(kdlib.KdNotFiniteError):
            kdlib.get_label_quality_scores(y, bad)
        with self.assertRaisesRegex(kdlib.KdInvalidArgumentError, "labels"):
            kdlib.get_label_quality_scores(np.where(y == 2, 3, y), p)
        with self.assertRaisesRegex(ValueError, "off_diagonal_custom"):
            kdlib.num_label_issues(y, p, estimation_method="off_diagonal_custom")
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            n = kdlib.num_label_issues(y, p, confident_joint=np.ones((3, 3), np.int64))
        self.assertEqual(n, kdlib.num_label_issues(y, p))
        self.assertTrue(any("ignored" in str(x.message) for x in w))


if __name__ == "__main__":
    unittest.main()


class SoftLabelsSelective(unittest.TestCase):
    def test_suspects_and_confidence_weight(self):
        case = CASES[1]
        y, p = case["labels"].astype(np.int32), case["probs"]
        n, c = p.shape
        issues = kdlib.find_label_issues(y, p, filter_by="both")
        eye = np.eye(c, dtype=np.float32)
        q = kdlib.soft_labels_selective(y, p, 0.7, suspects=issues, mode="probabilities")
        np.testing.assert_array_equal(q[~issues], eye[y[~issues]])
        ref = np.float32(0.7) * eye[y] + np.float32(1 - np.float32(0.7)) * p
        np.testing.assert_allclose(q[issues], ref[issues], rtol=0, atol=1e-7)
        q = kdlib.soft_labels_selective(y, p, 0.0, confidence_weight=True)
        w = p[np.arange(n), y][:, None]
        ref = w * eye[y] + (1 - w) * eye[p.argmax(1)]
        np.testing.assert_allclose(q, ref, rtol=0, atol=1e-6)
        # flags 0 is kd_soft_labels
        np.testing.assert_array_equal(kdlib.soft_labels_selective(y, p, 0.7),
                                      kdlib.soft_labels(y, 0.7, p))
        with self.assertRaisesRegex(kdlib.KdInvalidArgumentError, "label_weight"):
            kdlib.soft_labels_selective(y, p, 1.5)
        with self.assertRaisesRegex(ValueError, "suspects"):
            kdlib.soft_labels_selective(y, p, suspects=issues[:-1])
