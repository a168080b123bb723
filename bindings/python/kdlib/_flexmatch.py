"""FlexMatchThresholds: FlexMatch as one algorithm of kdlib.Thresholds
(include/kdlib/threshold.h); the names of kdlib/flexmatch.h kept."""
from ._threshold import Thresholds, threshold_param_bounds
from ._threshold import (PARAM_THRESHOLD, PARAM_MAPPING, PARAM_WARMUP,  # noqa: F401
                         PARAM_NON_STRICT, PARAM_NUM_SAMPLES, PARAM_NUM_CLASSES, MAPPING_LINEAR,
                         MAPPING_CONCAVE, MAPPING_CONVEX)


def flexmatch_param_bounds(param):
    """(lower, upper) of a FlexMatch parameter."""
    return threshold_param_bounds("flexmatch", param)


class FlexMatchThresholds(Thresholds):
    """FlexMatch per-class dynamic thresholds over an unlabeled set.

        fm = FlexMatchThresholds(num_samples, num_classes, threshold=0.95)
        tau_c = fm.thresholds()                   # before the batch's update
        r = kdlib.pseudo_label(student, teacher, class_thresholds=tau_c)
        fm.update(batch_indices, confidences, predictions)

    mapping: "convex" (x / (2 - x), tllib), "linear", "concave".  warmup:
    count never-predicted samples in the normaliser.  non_strict: the update
    selects confidence >= threshold instead of >.
    """

    _closed_message = "the FlexMatchThresholds handle is closed"

    def __init__(self, num_samples, num_classes, threshold=0.95, mapping="convex", warmup=False,
                 non_strict=False):
        super().__init__("flexmatch", num_samples, num_classes, threshold=threshold,
                         mapping=mapping, warmup=warmup, non_strict=non_strict)
