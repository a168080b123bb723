/* Weighted average of K teacher matrices (include/kdlib/labels.h). */
#include "kdlib/labels.h"

#include "kernels/rowops.h"
#include "labels/labels_internal.h"

#include <stdio.h>
#include <math.h>
#include <stdlib.h>

#define KDI_ENSEMBLE_FN "kd_ensemble_average"

kd_status kd_ensemble_average(int64_t n, int64_t c, int32_t k, const float *const *inputs,
                              const int64_t *lds, const float *weights, float *out, int64_t ld_out,
                              char *err, size_t err_size)
{
    kdi_label_clear(err, err_size);
    if (k < 1)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              KDI_ENSEMBLE_FN ": k = %d < 1", (int)k);
    if (!inputs || !lds || !out)
        return kdi_label_fail(err, err_size, KD_ERR_NULL_POINTER, KDI_ENSEMBLE_FN ": %s is NULL",
                              !inputs ? "inputs"
                              : !lds  ? "lds"
                                      : "out");
    for (int32_t r = 0; r < k; r++)
        if (!inputs[r])
            return kdi_label_fail(err, err_size, KD_ERR_NULL_POINTER,
                                  KDI_ENSEMBLE_FN ": inputs[%d] is NULL", (int)r);
    kd_status st = kdi_label_check_shape(KDI_ENSEMBLE_FN, "ld_out", n, c, ld_out, err, err_size);
    if (st != KD_OK)
        return st;
    for (int32_t r = 0; r < k; r++) {
        char name[32];
        snprintf(name, sizeof name, "lds[%d]", (int)r);
        st = kdi_label_check_shape(KDI_ENSEMBLE_FN, name, n, c, lds[r], err, err_size);
        if (st != KD_OK)
            return st;
    }
    double total = 0.0;
    if (weights) {
        for (int32_t r = 0; r < k; r++) {
            if (!(isfinite(weights[r]) && weights[r] >= 0.0f))
                return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                                      KDI_ENSEMBLE_FN ": weights[%d] = %g is not finite and >= 0",
                                      (int)r, (double)weights[r]);
            total += weights[r];
        }
        if (!(total > 0.0))
            return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                                  KDI_ENSEMBLE_FN ": the weights sum to 0");
    }
    for (int32_t r = 0; r < k; r++) {
        char name[32];
        snprintf(name, sizeof name, "inputs[%d]", (int)r);
        st = kdi_label_check_finite(KDI_ENSEMBLE_FN, name, inputs[r], n, c, lds[r], err, err_size);
        if (st != KD_OK)
            return st;
    }
    /* out may be inputs[0] exactly (kdi_row_average writes element j of a row
     * after reading element j of the first input); nothing else may overlap:
     * no input matrix, nor the arrays inputs, lds and weights.  The input
     * matrices take slot 0 in turn. */
    kdi_buf bufs[5] = {
        {0},
        kdi_buf_vector("inputs", -1, inputs, k, sizeof *inputs, 0),
        kdi_buf_vector("lds", -1, lds, k, sizeof *lds, 0),
        kdi_buf_vector("weights", -1, weights, k, sizeof *weights, 0),
        kdi_buf_matrix("out", -1, out, n, ld_out, c, 4, 1),
    };
    for (int32_t r = 0; r < k; r++) {
        bufs[0] = kdi_buf_matrix("inputs", r, inputs[r], n, lds[r], c, 4, 0);
        bufs[4].in_place = r == 0 ? 0 : -1;
        st = kdi_check_aliasing(err, err_size, KDI_ENSEMBLE_FN, bufs, 5);
        if (st != KD_OK)
            return st;
    }

    const float **rows = malloc((size_t)k * sizeof *rows);
    float *w = malloc((size_t)k * sizeof *w);
    if (!rows || !w) {
        free(rows);
        free(w);
        return kdi_label_fail(err, err_size, KD_ERR_OUT_OF_MEMORY,
                              KDI_ENSEMBLE_FN ": out of memory for %d teachers", (int)k);
    }
    for (int32_t r = 0; r < k; r++)
        w[r] = weights ? (float)((double)weights[r] / total) : (float)(1.0 / (double)k);
    for (int64_t i = 0; i < n; i++) {
        for (int32_t r = 0; r < k; r++)
            rows[r] = inputs[r] + i * lds[r];
        kdi_row_average(out + i * ld_out, rows, w, k, c);
    }
    free(rows);
    free(w);
    return KD_OK;
}
