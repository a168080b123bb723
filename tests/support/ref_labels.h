/* Double-precision references of the label tools and FlexMatch thresholds,
 * written from the formulas of docs/labels.md (plain loops, no cleverness).
 * Pure C, no dependency on libkd. */
#ifndef REF_LABELS_H
#define REF_LABELS_H

#include <stdint.h>

/* FlexMatch thresholds from the full prediction vector pred[N] (-1 = none),
 * recounted from scratch: tau_c = M(beta_c) * tau.  mapping 0 linear,
 * 1 concave, 2 convex.  beta may be NULL. */
void ref_flexmatch_thresholds(const int32_t *pred, int64_t n, int64_t c, double tau, int mapping,
                              int warmup, double *tau_c, double *beta);

/* Pseudo-label selection.  conf/label/mask are n each (mask 0/1).  Top-k by
 * counting: row i stays iff fewer than k selected rows of its class are
 * more confident, or as confident with a lower index. */
void ref_select(int64_t n, int64_t c, const float *x, int64_t ld, int logits, int non_strict,
                double threshold, const float *class_thresholds, int64_t top_k, double *conf,
                int32_t *label, int *mask);

/* Label quality score (kind as KD_LABEL_SCORE_*) of one labelled row. */
double ref_label_score(const float *row, int64_t c, int32_t y, int kind);

/* Confident learning: thresholds (double mean rounded to float, +Inf when a
 * class has no label), confident class (-1 none) and suspects. */
void ref_label_issues(int64_t n, int64_t c, const float *p, int64_t ld, const int32_t *labels,
                      int32_t ignore_index, float *t, int32_t *k, int *suspect);

/* Soft labels (mode 0 onehot, 1 probabilities) into a dense n x c double matrix. */
void ref_soft_labels(int64_t n, int64_t c, const int32_t *labels, int32_t ignore_index, double w,
                     int mode, const float *p, int64_t ld, const int32_t *pred, double *q);

/* Weighted average (weights NULL: uniform) into a dense n x c double matrix. */
void ref_ensemble(int64_t n, int64_t c, int k, const float *const *x, const int64_t *lds,
                  const float *weights, double *out);

#endif
