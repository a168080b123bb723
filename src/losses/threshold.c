/* Confidence thresholding of teacher rows, shared by the pseudo-label and the
 * UDA strong/weak losses: conf = max softmax(t) = 1 / sum_j exp(t_j - max)
 * (the max logit's probability), compared in float32 with the
 * global or the per-class threshold, strict (tllib) or not (FixMatch). */
#include <math.h>
#include <omp.h>

#include "losses/loss_internal.h"

kdi_confident kdi_threshold_row(const kd_loss *h, const float *t, float *work, int nthr,
                                const float *pf)
{
    kdi_confident cf;
    double sum;
    /* the max is the argmax's value (NaN when the row has a NaN); with a +Inf
     * or an all -Inf row the sum is NaN, and NaN is never kept */
    cf.label = (int32_t)h->ops->row_confidence(t, h->c, work, nthr, pf, &sum);
    cf.l.max = t[cf.label];
    cf.l.logsum = (float)log(sum);
    const float conf = (float)(1.0 / sum); /* max softmax(t), as the short-row kernel */
    const float tau = h->class_thresholds ? h->class_thresholds[cf.label] : (float)h->threshold;
    cf.keep = h->threshold_mode == KD_THRESHOLD_INCLUSIVE ? conf >= tau : conf > tau;
    return cf;
}

int64_t kdi_count_confident(const kd_loss *h, int64_t n, int nthreads)
{
    int64_t kept = 0;
#define KEPT_ROW(i)                                                                                \
    kdi_threshold_row(h, kdi_teacher_row(h, i), kdi_thread_scratch(h) + h->c, 1, NULL).keep
    if (nthreads <= 1) { /* one thread never enters OpenMP (core/parallel.h) */
        for (int64_t i = 0; i < n; i++)
            kept += KEPT_ROW(i);
        return kept;
    }
#pragma omp parallel for num_threads(nthreads) schedule(static) reduction(+ : kept)
    for (int64_t i = 0; i < n; i++) {
        kept += KEPT_ROW(i);
    }
#undef KEPT_ROW
    return kept;
}
