/* Confidence thresholding of teacher rows, shared by the pseudo-label and the
 * UDA strong/weak losses: conf = max softmax(t) = exp(-logsum) (the max
 * logit's log-probability is exactly -logsum), compared in float32 with the
 * global or the per-class threshold, strict (tllib) or not (FixMatch). */
#include <omp.h>

#include "losses/loss_internal.h"

kdi_confident kdi_threshold_row(const kd_loss *h, const float *t)
{
    kdi_confident cf;
    cf.l = kdi_row_lse(t, h->c, 1.0f);
    cf.label = (int32_t)kdi_row_argmax_torch(t, h->c);
    const float conf = expf(-cf.l.logsum); /* NaN for a non-finite row: never kept */
    const float tau = h->class_thresholds ? h->class_thresholds[cf.label] : (float)h->threshold;
    cf.keep = h->threshold_mode == KD_THRESHOLD_INCLUSIVE ? conf >= tau : conf > tau;
    return cf;
}

int64_t kdi_count_confident(const kd_loss *h, int64_t n, int nthreads)
{
    int64_t kept = 0;
#pragma omp parallel for num_threads(nthreads) schedule(static) reduction(+ : kept)
    for (int64_t i = 0; i < n; i++) {
        kept += kdi_threshold_row(h, kdi_teacher_row(h, i)).keep;
    }
    return kept;
}
