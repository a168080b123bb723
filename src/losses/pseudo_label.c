/* Confidence-threshold pseudo-label (tllib ConfidenceBasedSelfTrainingLoss):
 *   l = m * CE(s, yhat),  yhat = argmax t,  m = [max softmax(t) > tau]
 * Gradient (the teacher is detached): d l / d s_j = m (softmax(s)_j - [j = yhat]).
 * A masked row costs one pass over the teacher only: its kernel does not read
 * the student (the previous row's call may have read it for its maximum, see
 * kdi_pipe, and prefetched it, see kdi_threshold_row). */
#include "losses/loss_internal.h"

void kdi_pseudo_label_row(const kd_loss *h, const kdi_row *r, double terms[2])
{
    const int64_t c = h->c;
    /* the student row is prefetched while the teacher row is scanned when the
     * last row was kept (a masked row does not read it) */
    const kdi_confident cf =
        kdi_threshold_row(h, r->t, r->work, r->nthr, !r->pipe || r->pipe->kept ? r->s : NULL);
    if (r->pipe)
        r->pipe->kept = cf.keep;
    if (r->mask)
        *r->mask = cf.keep ? 1.0f : 0.0f;
    if (r->label)
        *r->label = cf.label;
    terms[0] = terms[1] = 0.0;
    if (!cf.keep) {
        if (r->g)
            for (int64_t j = 0; j < c; j++)
                r->g[j] = 0.0f;
        return;
    }
    /* CE against the one-hot pseudo-label: the shared vectorised row kernel */
    const kdi_simd_label lab = {1, cf.label, 1.0f, 0.0f, 0.0f};
    terms[0] = h->ops->ce_row(r->s, NULL, 0, r->g, c, 1.0f, 0.0f, &lab, 1.0f, (float)r->c_soft,
                              r->work, r->nthr, r->pipe);
    /* a confident row: the gradient at the label from the complement
     * (kdi_ce_confident_fix; the kernel takes the loss from the double sum) */
    if (terms[0] < KDI_CONFIDENT_LOSS)
        kdi_ce_confident_fix(h, NULL, r->g, cf.label, 1.0f);
}
