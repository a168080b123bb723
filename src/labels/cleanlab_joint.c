/* cleanlab-compatible confident joint, noise matrices, class prior and
 * num_label_issues (include/kdlib/labels.h; cleanlab count.py and
 * internal/latent_algebra.py). */
#include "kdlib/labels.h"

#include "labels/cleanlab_internal.h"
#include "labels/labels_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KDI_TINY 1e-100 /* cleanlab's TINY_VALUE */

/* Workspace of the joint functions. */
typedef struct {
    void *block;
    int64_t *counts, *start, *order, *cj, *cal;
    double *thresholds, *gather, *work;
    kdi_cl_key *keys;
    uint8_t *offdiag;
} kdi_cl_joint_ws;

static kd_status kdi_cl_joint_alloc(const char *fn, int64_t n, int64_t c, kdi_cl_joint_ws *w,
                                    char *err, size_t err_size)
{
    size_t cc;
    if (!kdi_size_mul((size_t)c, (size_t)c, &cc) || !kdi_size_add(cc, 2 * (size_t)c, &cc))
        return kdi_label_fail(err, err_size, KD_ERR_OUT_OF_MEMORY,
                              "%s: c = %lld: c x c matrices do not fit in memory", fn,
                              (long long)c);
    const size_t un = (size_t)n, uc = (size_t)c;
    void **ptr[10] = {(void **)&w->counts, (void **)&w->start, (void **)&w->order,
                      (void **)&w->cj,     (void **)&w->cal,   (void **)&w->thresholds,
                      (void **)&w->gather, (void **)&w->work,  (void **)&w->keys,
                      (void **)&w->offdiag};
    const size_t count[10] = {uc, uc + 1, un, cc, cc, uc, un, cc, uc, un};
    const size_t size[10] = {8, 8, 8, 8, 8, 8, 8, 8, sizeof(kdi_cl_key), 1};
    w->block = kdi_cl_alloc(10, ptr, count, size);
    if (!w->block)
        return kdi_label_fail(err, err_size, KD_ERR_OUT_OF_MEMORY,
                              "%s: out of memory for n = %lld rows and c = %lld classes", fn,
                              (long long)n, (long long)c);
    return KD_OK;
}

static kd_status kdi_cl_check_joint_input(const char *fn, int64_t c, const int64_t *cj, char *err,
                                          size_t err_size)
{
    for (int64_t k = 0; k < c * c; k++)
        if (cj[k] < 0)
            return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                                  "%s: confident_joint[%lld][%lld] = %lld < 0", fn,
                                  (long long)(k / c), (long long)(k % c), (long long)cj[k]);
    return KD_OK;
}

/* The common start of every function here, once its own arguments are
 * checked: the inputs, every output (outs) against probs, labels and each
 * other, a caller's confident joint (custom, may be NULL), then the
 * workspace.  On KD_OK the caller frees w->block. */
static kd_status kdi_cl_prepare(const char *fn, int64_t n, int64_t c, const float *probs,
                                int64_t ld, const int32_t *labels, int32_t ignore_index,
                                const kdi_buf *outs, int nout, const int64_t *custom,
                                kdi_cl_joint_ws *w, char *err, size_t err_size)
{
    kd_status st = kdi_cl_check_inputs(fn, n, c, probs, ld, labels, ignore_index, err, err_size);
    if (st != KD_OK)
        return st;
    kdi_buf bufs[8];
    bufs[0] = kdi_buf_matrix("probs", -1, probs, n, ld, c, 4, 0);
    bufs[1] = kdi_buf_vector("labels", -1, labels, n, 4, 0);
    for (int k = 0; k < nout && k < 6; k++)
        bufs[2 + k] = outs[k];
    st = kdi_check_aliasing(err, err_size, fn, bufs, 2 + nout);
    if (st == KD_OK && custom)
        st = kdi_cl_check_joint_input(fn, c, custom, err, err_size);
    if (st != KD_OK)
        return st;
    return kdi_cl_joint_alloc(fn, n, c, w, err, err_size);
}

/* Thresholds, the uncalibrated joint (w->cj, off-diagonal flags in
 * w->offdiag) and, when calibrate, the calibrated one in w->cal. */
static void kdi_cl_joint_compute(int64_t n, int64_t c, const float *probs, int64_t ld,
                                 const int32_t *labels, int32_t ignore_index, int calibrate,
                                 kdi_cl_joint_ws *w)
{
    kdi_cl_thresholds(n, c, probs, ld, labels, ignore_index, w->counts, w->thresholds, w->gather,
                      w->order, w->start);
    kdi_cl_confident_joint(n, c, probs, ld, labels, ignore_index, w->thresholds, w->cj, w->offdiag);
    if (calibrate)
        kdi_cl_calibrate(c, w->cj, w->counts, w->cal, w->work, w->keys);
}

kd_status kd_cleanlab_confident_thresholds(int64_t n, int64_t c, const float *probs, int64_t ld,
                                           const int32_t *labels, int32_t ignore_index,
                                           double *thresholds, char *err, size_t err_size)
{
    static const char fn[] = "kd_cleanlab_confident_thresholds";
    kdi_label_clear(err, err_size);
    if (!thresholds)
        return kdi_label_fail(err, err_size, KD_ERR_NULL_POINTER, "%s: thresholds is NULL", fn);
    const kdi_buf outs[1] = {kdi_buf_vector("thresholds", -1, thresholds, c, 8, 1)};
    kdi_cl_joint_ws w;
    kd_status st =
        kdi_cl_prepare(fn, n, c, probs, ld, labels, ignore_index, outs, 1, NULL, &w, err, err_size);
    if (st != KD_OK)
        return st;
    kdi_cl_thresholds(n, c, probs, ld, labels, ignore_index, w.counts, w.thresholds, w.gather,
                      w.order, w.start);
    memcpy(thresholds, w.thresholds, (size_t)c * sizeof *thresholds);
    free(w.block);
    return KD_OK;
}

kd_status kd_cleanlab_confident_joint(int64_t n, int64_t c, const float *probs, int64_t ld,
                                      const int32_t *labels, int32_t ignore_index, int32_t flags,
                                      int64_t *confident_joint, uint8_t *off_diagonal,
                                      int64_t *num_off_diagonal, char *err, size_t err_size)
{
    static const char fn[] = "kd_cleanlab_confident_joint";
    kdi_label_clear(err, err_size);
    if (!confident_joint)
        return kdi_label_fail(err, err_size, KD_ERR_NULL_POINTER, "%s: confident_joint is NULL",
                              fn);
    if (flags & ~KD_CLEANLAB_CALIBRATE)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              "%s: flags = %d: only KD_CLEANLAB_CALIBRATE is allowed", fn,
                              (int)flags);
    const kdi_buf outs[3] = {
        kdi_buf_matrix("confident_joint", -1, confident_joint, c, c, c, 8, 1),
        kdi_buf_vector("off_diagonal", -1, off_diagonal, n, 1, 1),
        kdi_buf_vector("num_off_diagonal", -1, num_off_diagonal, 1, 8, 1),
    };
    kdi_cl_joint_ws w;
    kd_status st =
        kdi_cl_prepare(fn, n, c, probs, ld, labels, ignore_index, outs, 3, NULL, &w, err, err_size);
    if (st != KD_OK)
        return st;
    const int calibrate = (flags & KD_CLEANLAB_CALIBRATE) != 0;
    kdi_cl_joint_compute(n, c, probs, ld, labels, ignore_index, calibrate, &w);
    memcpy(confident_joint, calibrate ? w.cal : w.cj, (size_t)(c * c) * sizeof *confident_joint);
    int64_t off = 0;
    for (int64_t i = 0; i < n; i++)
        off += w.offdiag[i];
    if (off_diagonal && n > 0)
        memcpy(off_diagonal, w.offdiag, (size_t)n);
    if (num_off_diagonal)
        *num_off_diagonal = off;
    free(w.block);
    return KD_OK;
}

/* joint = cal / max(sum(cal), TINY) */
static void kdi_cl_joint_from(int64_t c, const int64_t *cal, double *joint)
{
    int64_t s = 0;
    for (int64_t k = 0; k < c * c; k++)
        s += cal[k];
    const double d = s > 0 ? (double)s : KDI_TINY;
    for (int64_t k = 0; k < c * c; k++)
        joint[k] = (double)cal[k] / d;
}

kd_status kd_cleanlab_estimate_joint(int64_t n, int64_t c, const float *probs, int64_t ld,
                                     const int32_t *labels, int32_t ignore_index,
                                     const int64_t *confident_joint, double *joint, char *err,
                                     size_t err_size)
{
    static const char fn[] = "kd_cleanlab_estimate_joint";
    kdi_label_clear(err, err_size);
    if (!joint)
        return kdi_label_fail(err, err_size, KD_ERR_NULL_POINTER, "%s: joint is NULL", fn);
    const kdi_buf outs[2] = {
        kdi_buf_matrix("confident_joint", -1, confident_joint, c, c, c, 8, 0),
        kdi_buf_matrix("joint", -1, joint, c, c, c, 8, 1),
    };
    kdi_cl_joint_ws w;
    kd_status st = kdi_cl_prepare(fn, n, c, probs, ld, labels, ignore_index, outs, 2,
                                  confident_joint, &w, err, err_size);
    if (st != KD_OK)
        return st;
    if (confident_joint) {
        kdi_cl_thresholds(n, c, probs, ld, labels, ignore_index, w.counts, w.thresholds, w.gather,
                          w.order, w.start);
        kdi_cl_calibrate(c, confident_joint, w.counts, w.cal, w.work, w.keys);
    } else {
        kdi_cl_joint_compute(n, c, probs, ld, labels, ignore_index, 1, &w);
    }
    kdi_cl_joint_from(c, w.cal, joint);
    free(w.block);
    return KD_OK;
}

/* ---- latent estimates (cleanlab internal/latent_algebra.py) ---------------- */

/* clip_noise_rates: off-diagonal entries clipped to [0, 0.9999], columns
 * renormalised (column sums accumulated row by row, as NumPy's axis=0 sum). */
static void kdi_cl_clip_noise_rates(int64_t c, double *m, double *colsum)
{
    for (int64_t i = 0; i < c; i++)
        for (int64_t j = 0; j < c; j++)
            if (i != j) {
                double v = m[i * c + j];
                m[i * c + j] = v < 0.0 ? 0.0 : v > 0.9999 ? 0.9999 : v;
            }
    for (int64_t j = 0; j < c; j++)
        colsum[j] = 0.0;
    for (int64_t i = 0; i < c; i++)
        for (int64_t j = 0; j < c; j++)
            colsum[j] += m[i * c + j];
    for (int64_t i = 0; i < c; i++)
        for (int64_t j = 0; j < c; j++)
            m[i * c + j] = m[i * c + j] / (colsum[j] >= KDI_TINY ? colsum[j] : KDI_TINY);
}

/* clip_values(x, low, 1, new_sum=1) */
static void kdi_cl_clip_values(int64_t c, double *x, double low)
{
    for (int64_t j = 0; j < c; j++)
        x[j] = x[j] < low ? low : x[j] > 1.0 ? 1.0 : x[j];
    double s = kdi_cl_sum(x, c, 1);
    if (!(s >= KDI_TINY))
        s = KDI_TINY;
    for (int64_t j = 0; j < c; j++)
        x[j] = x[j] * 1.0 / s;
}

/* compute_py with py_method="cnt" */
static void kdi_cl_py_cnt(int64_t c, const double *ps, const double *nm, const double *inv,
                          double *py)
{
    for (int64_t j = 0; j < c; j++) {
        const double d = nm[j * c + j];
        py[j] = inv[j * c + j] / (d >= KDI_TINY ? d : KDI_TINY) * ps[j];
    }
    kdi_cl_clip_values(c, py, 1e-6);
}

kd_status kd_cleanlab_estimate_py_and_noise_matrices(
    int64_t n, int64_t c, const float *probs, int64_t ld, const int32_t *labels,
    int32_t ignore_index, int32_t flags, double *py, double *noise_matrix, double *inv_noise_matrix,
    int64_t *confident_joint, char *err, size_t err_size)
{
    static const char fn[] = "kd_cleanlab_estimate_py_and_noise_matrices";
    kdi_label_clear(err, err_size);
    if (flags & ~(KD_CLEANLAB_CALIBRATE | KD_CLEANLAB_CONVERGE))
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              "%s: flags = %d: only KD_CLEANLAB_CALIBRATE and "
                              "KD_CLEANLAB_CONVERGE are allowed",
                              fn, (int)flags);
    const kdi_buf outs[4] = {
        kdi_buf_vector("py", -1, py, c, 8, 1),
        kdi_buf_matrix("noise_matrix", -1, noise_matrix, c, c, c, 8, 1),
        kdi_buf_matrix("inv_noise_matrix", -1, inv_noise_matrix, c, c, c, 8, 1),
        kdi_buf_matrix("confident_joint", -1, confident_joint, c, c, c, 8, 1),
    };
    kdi_cl_joint_ws w;
    kd_status st =
        kdi_cl_prepare(fn, n, c, probs, ld, labels, ignore_index, outs, 4, NULL, &w, err, err_size);
    if (st != KD_OK)
        return st;
    /* latent matrices: nm, inv, joint scratch, plus ps, py, colsum */
    const size_t cc = (size_t)(c * c);
    double *nm = NULL, *inv = NULL, *tmp = NULL, *ps = NULL, *pyw = NULL, *col = NULL;
    void **ptr[6] = {(void **)&nm, (void **)&inv, (void **)&tmp,
                     (void **)&ps, (void **)&pyw, (void **)&col};
    const size_t count[6] = {cc, cc, cc, (size_t)c, (size_t)c, (size_t)c};
    const size_t size[6] = {8, 8, 8, 8, 8, 8};
    void *lat = kdi_cl_alloc(6, ptr, count, size);
    if (!lat) {
        free(w.block);
        return kdi_label_fail(err, err_size, KD_ERR_OUT_OF_MEMORY,
                              "%s: out of memory for c = %lld classes", fn, (long long)c);
    }
    const int calibrate = (flags & KD_CLEANLAB_CALIBRATE) != 0;
    kdi_cl_joint_compute(n, c, probs, ld, labels, ignore_index, calibrate, &w);
    const int64_t *cj = calibrate ? w.cal : w.cj;

    /* estimate_latent */
    int64_t total = 0;
    for (int64_t k = 0; k < c; k++)
        total += w.counts[k];
    for (int64_t k = 0; k < c; k++)
        ps[k] = total > 0 ? (double)w.counts[k] / (double)total : 0.0;
    for (int64_t j = 0; j < c; j++) {
        int64_t rs = 0, cs = 0;
        for (int64_t i = 0; i < c; i++) {
            rs += cj[j * c + i];
            cs += cj[i * c + j];
        }
        const double dr = rs > 0 ? (double)rs : KDI_TINY, dc = cs > 0 ? (double)cs : KDI_TINY;
        for (int64_t i = 0; i < c; i++) {
            nm[i * c + j] = (double)cj[i * c + j] / dc;  /* P(given i | true j) */
            inv[i * c + j] = (double)cj[j * c + i] / dr; /* P(true i | given j) */
        }
    }
    kdi_cl_py_cnt(c, ps, nm, inv, pyw);
    kdi_cl_clip_noise_rates(c, nm, col);
    kdi_cl_clip_noise_rates(c, inv, col);
    if (flags & KD_CLEANLAB_CONVERGE) {
        for (int outer = 0; outer < 3; outer++) {
            for (int inner = 0; inner < 5; inner++) {
                /* compute_inv_noise_matrix: inv[a][b] = nm[b][a] py[a] / ps[b] */
                for (int64_t a = 0; a < c; a++)
                    for (int64_t b = 0; b < c; b++)
                        inv[a * c + b] =
                            nm[b * c + a] * pyw[a] / (ps[b] >= KDI_TINY ? ps[b] : KDI_TINY);
                kdi_cl_clip_noise_rates(c, inv, col);
                kdi_cl_py_cnt(c, ps, nm, inv, pyw);
            }
            /* compute_noise_matrix_from_inverse: nm[a][b] = inv[b][a] ps[a] / py[b] */
            for (int64_t a = 0; a < c; a++)
                for (int64_t b = 0; b < c; b++)
                    nm[a * c + b] =
                        inv[b * c + a] * ps[a] / (pyw[b] >= KDI_TINY ? pyw[b] : KDI_TINY);
            kdi_cl_clip_noise_rates(c, nm, col);
        }
        kdi_cl_clip_values(c, pyw, 1e-5);
        kdi_cl_clip_noise_rates(c, nm, col);
        kdi_cl_clip_noise_rates(c, inv, col);
    }
    (void)tmp;
    if (py)
        memcpy(py, pyw, (size_t)c * sizeof *py);
    if (noise_matrix)
        memcpy(noise_matrix, nm, cc * sizeof *noise_matrix);
    if (inv_noise_matrix)
        memcpy(inv_noise_matrix, inv, cc * sizeof *inv_noise_matrix);
    if (confident_joint)
        memcpy(confident_joint, cj, cc * sizeof *confident_joint);
    free(lat);
    free(w.block);
    return KD_OK;
}

/* ---- num_label_issues -------------------------------------------------------- */

/* rint((1 - trace(joint)) * n) with the trace summed as NumPy does */
static int64_t kdi_cl_calibrated_count(int64_t c, const int64_t *cal, int64_t total, double *joint)
{
    kdi_cl_joint_from(c, cal, joint);
    const double trace = kdi_cl_sum(joint, c, c + 1);
    return (int64_t)rint((1.0 - trace) * (double)total);
}

kd_status kd_cleanlab_num_label_issues(int64_t n, int64_t c, const float *probs, int64_t ld,
                                       const int32_t *labels, int32_t ignore_index,
                                       int32_t estimation_method, const int64_t *confident_joint,
                                       int64_t *num_issues, char *err, size_t err_size)
{
    static const char fn[] = "kd_cleanlab_num_label_issues";
    kdi_label_clear(err, err_size);
    if (!num_issues)
        return kdi_label_fail(err, err_size, KD_ERR_NULL_POINTER, "%s: num_issues is NULL", fn);
    if (estimation_method < KD_CLEANLAB_OFF_DIAGONAL ||
        estimation_method > KD_CLEANLAB_OFF_DIAGONAL_CUSTOM)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              "%s: estimation_method = %d is not a KD_CLEANLAB_OFF_DIAGONAL*", fn,
                              (int)estimation_method);
    if (estimation_method == KD_CLEANLAB_OFF_DIAGONAL_CUSTOM && !confident_joint)
        return kdi_label_fail(err, err_size, KD_ERR_NULL_POINTER,
                              "%s: confident_joint is NULL with KD_CLEANLAB_OFF_DIAGONAL_CUSTOM",
                              fn);
    if (estimation_method != KD_CLEANLAB_OFF_DIAGONAL_CUSTOM && confident_joint)
        return kdi_label_fail(err, err_size, KD_ERR_INVALID_ARGUMENT,
                              "%s: confident_joint is only used with "
                              "KD_CLEANLAB_OFF_DIAGONAL_CUSTOM (pass NULL)",
                              fn);
    const kdi_buf outs[2] = {
        kdi_buf_matrix("confident_joint", -1, confident_joint, c, c, c, 8, 0),
        kdi_buf_vector("num_issues", -1, num_issues, 1, 8, 1),
    };
    kdi_cl_joint_ws w;
    kd_status st = kdi_cl_prepare(fn, n, c, probs, ld, labels, ignore_index, outs, 2,
                                  confident_joint, &w, err, err_size);
    if (st != KD_OK)
        return st;
    int64_t count = 0, total = 0;
    if (estimation_method == KD_CLEANLAB_OFF_DIAGONAL) {
        kdi_cl_joint_compute(n, c, probs, ld, labels, ignore_index, 0, &w);
        for (int64_t i = 0; i < n; i++)
            count += w.offdiag[i] && !kdi_cl_label_is_near_argmax(probs + i * ld, c, labels[i]);
    } else {
        if (estimation_method == KD_CLEANLAB_OFF_DIAGONAL_CUSTOM) {
            kdi_cl_thresholds(n, c, probs, ld, labels, ignore_index, w.counts, w.thresholds,
                              w.gather, w.order, w.start);
            kdi_cl_calibrate(c, confident_joint, w.counts, w.cal, w.work, w.keys);
        } else {
            kdi_cl_joint_compute(n, c, probs, ld, labels, ignore_index, 1, &w);
        }
        for (int64_t k = 0; k < c; k++)
            total += w.counts[k];
        count = kdi_cl_calibrated_count(c, w.cal, total, w.work);
    }
    *num_issues = count;
    free(w.block);
    return KD_OK;
}
