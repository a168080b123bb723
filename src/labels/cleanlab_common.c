/* Shared pieces of the cleanlab-compatible functions (cleanlab_internal.h):
 * NumPy-order summation, the stable key sort, input checks, workspace, the
 * confident thresholds, the confident joint and its calibration. */
#include "labels/cleanlab_internal.h"

#include "core/bufcheck.h"
#include "labels/labels_internal.h"

#include <math.h>
#include <stdlib.h>

double kdi_cl_sum(const double *a, int64_t n, int64_t stride)
{
    if (n < 8) {
        double s = 0.0;
        for (int64_t i = 0; i < n; i++)
            s += a[i * stride];
        return s;
    }
    if (n <= 128) {
        double r[8];
        for (int j = 0; j < 8; j++)
            r[j] = a[j * stride];
        int64_t i = 8;
        for (; i < n - (n % 8); i += 8)
            for (int j = 0; j < 8; j++)
                r[j] += a[(i + j) * stride];
        double s = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for (; i < n; i++)
            s += a[i * stride];
        return s;
    }
    int64_t half = n / 2;
    half -= half % 8;
    return kdi_cl_sum(a, half, stride) + kdi_cl_sum(a + half * stride, n - half, stride);
}

static int kdi_cl_key_compare(const void *pa, const void *pb)
{
    const kdi_cl_key *a = pa, *b = pb;
    const int na = isnan(a->key), nb = isnan(b->key);
    if (na != nb)
        return na - nb; /* NaN after every number, as NumPy sorts */
    if (!na && a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return (a->row > b->row) - (a->row < b->row);
}

void kdi_cl_sort(kdi_cl_key *e, int64_t n)
{
    if (n > 1)
        qsort(e, (size_t)n, sizeof *e, kdi_cl_key_compare);
}

static void kdi_cl_swap(kdi_cl_key *a, kdi_cl_key *b)
{
    const kdi_cl_key t = *a;
    *a = *b;
    *b = t;
}

void kdi_cl_select_lowest(kdi_cl_key *e, int64_t n, int64_t k)
{
    if (k <= 0 || k >= n)
        return;
    int64_t lo = 0, hi = n - 1;
    /* quickselect with the median of three; keys are totally ordered (row
     * breaks every tie), so the selected set is unique.  After 2 log2(n) + 8
     * rounds (an adversarial order) the rest is sorted instead. */
    int budget = 8;
    for (int64_t m = n; m > 1; m >>= 1)
        budget += 2;
    while (hi > lo) {
        if (budget-- == 0 || hi - lo < 3) { /* a few keys left, or too many rounds */
            kdi_cl_sort(e + lo, hi - lo + 1);
            return;
        }
        const int64_t mid = lo + (hi - lo) / 2;
        if (kdi_cl_key_compare(&e[mid], &e[lo]) < 0)
            kdi_cl_swap(&e[mid], &e[lo]);
        if (kdi_cl_key_compare(&e[hi], &e[lo]) < 0)
            kdi_cl_swap(&e[hi], &e[lo]);
        if (kdi_cl_key_compare(&e[hi], &e[mid]) < 0)
            kdi_cl_swap(&e[hi], &e[mid]);
        /* e[lo] <= e[mid] <= e[hi]: partition e[lo + 1 .. hi - 1] around the
         * pivot, kept at hi - 1 (Lomuto on distinct keys) */
        kdi_cl_swap(&e[mid], &e[hi - 1]);
        const kdi_cl_key pivot = e[hi - 1];
        int64_t store = lo + 1;
        for (int64_t i = lo + 1; i < hi - 1; i++)
            if (kdi_cl_key_compare(&e[i], &pivot) < 0)
                kdi_cl_swap(&e[i], &e[store++]);
        kdi_cl_swap(&e[store], &e[hi - 1]); /* the pivot at its final place */
        if (store == k || store == k - 1)
            return; /* e[0 .. k) are the k lowest */
        if (store < k)
            lo = store + 1;
        else
            hi = store - 1;
    }
}

kd_status kdi_cl_check_inputs(const char *fn, int64_t n, int64_t c, const float *probs, int64_t ld,
                              const int32_t *labels, int32_t ignore_index, char *err,
                              size_t err_size)
{
    if (!probs || !labels)
        return kdi_label_fail(err, err_size, KD_ERR_NULL_POINTER, "%s: %s is NULL", fn,
                              !probs ? "probs" : "labels");
    kd_status st = kdi_label_check_shape(fn, "ld", n, c, ld, err, err_size);
    if (st == KD_OK)
        st = kdi_label_check_labels(fn, labels, n, c, ignore_index, err, err_size);
    if (st == KD_OK)
        st = kdi_label_check_probs(fn, "probs", probs, n, c, ld, err, err_size);
    return st;
}

void *kdi_cl_alloc(int k, void **ptr[], const size_t count[], const size_t size[])
{
    size_t total = 0, off[16];
    if (k > 16)
        return NULL;
    for (int i = 0; i < k; i++) {
        size_t bytes;
        if (!kdi_size_mul(count[i], size[i], &bytes) || !kdi_size_add(bytes, 15, &bytes))
            return NULL;
        off[i] = total;
        if (!kdi_size_add(total, bytes & ~(size_t)15, &total))
            return NULL;
    }
    char *base = malloc(total > 0 ? total : 1);
    if (!base)
        return NULL;
    for (int i = 0; i < k; i++)
        *ptr[i] = base + off[i];
    return base;
}

void kdi_cl_group_rows(int64_t n, int64_t c, const int32_t *labels, int32_t ignore_index,
                       int64_t *start, int64_t *order)
{
    for (int64_t k = 0; k <= c; k++)
        start[k] = 0;
    for (int64_t i = 0; i < n; i++)
        if (labels[i] != ignore_index)
            start[labels[i] + 1]++;
    for (int64_t k = 0; k < c; k++)
        start[k + 1] += start[k];
    /* fill with a moving cursor per class: start[k] is advanced, then restored */
    for (int64_t i = 0; i < n; i++)
        if (labels[i] != ignore_index)
            order[start[labels[i]]++] = i;
    for (int64_t k = c; k > 0; k--)
        start[k] = start[k - 1];
    start[0] = 0;
}

void kdi_cl_thresholds(int64_t n, int64_t c, const float *probs, int64_t ld, const int32_t *labels,
                       int32_t ignore_index, int64_t *counts, double *thresholds, double *gather,
                       int64_t *order, int64_t *start)
{
    kdi_cl_group_rows(n, c, labels, ignore_index, start, order);
    /* np.mean of the class's values: their pairwise sum, divided by the count */
    for (int64_t k = 0; k < c; k++) {
        const int64_t m = start[k + 1] - start[k];
        counts[k] = m;
        if (m == 0) {
            thresholds[k] = 2.0; /* cleanlab's BIG_VALUE */
            continue;
        }
        for (int64_t r = 0; r < m; r++)
            gather[r] = (double)probs[order[start[k] + r] * ld + k];
        thresholds[k] = kdi_cl_sum(gather, m, 1) / (double)m;
    }
    for (int64_t k = 0; k < c; k++)
        if (thresholds[k] < 2 * 1e-6)
            thresholds[k] = 2 * 1e-6; /* CONFIDENT_THRESHOLDS_LOWER_BOUND */
}

void kdi_cl_confident_joint(int64_t n, int64_t c, const float *probs, int64_t ld,
                            const int32_t *labels, int32_t ignore_index, const double *thresholds,
                            int64_t *cj, uint8_t *off_diagonal)
{
    for (int64_t k = 0; k < c * c; k++)
        cj[k] = 0;
    for (int64_t i = 0; i < n; i++) {
        const int32_t y = labels[i];
        if (off_diagonal)
            off_diagonal[i] = 0;
        if (y == ignore_index)
            continue;
        const float *row = probs + i * ld;
        int64_t confident = 0, only = -1, best = 0;
        for (int64_t j = 0; j < c; j++) {
            if ((double)row[j] >= thresholds[j] - 1e-6) {
                confident++;
                only = j;
            }
            if (row[j] > row[best])
                best = j;
        }
        if (confident == 0)
            continue;
        /* cleanlab: one confident class is the guess; with several, the
         * argmax over all classes (it may not be a confident one). */
        const int64_t guess = confident == 1 ? only : best;
        cj[(int64_t)y * c + guess]++;
        if (off_diagonal && guess != y)
            off_diagonal[i] = 1;
    }
    for (int64_t k = 0; k < c; k++)
        if (cj[k * c + k] < 1)
            cj[k * c + k] = 1;
}

int64_t kdi_cl_to_int64(double v)
{
    /* [-2^63, 2^63): every double there truncates to an int64 */
    if (!(v >= -9223372036854775808.0 && v < 9223372036854775808.0))
        return INT64_MIN;
    return (int64_t)v;
}

/* round_preserving_sum of one row of c doubles (NumPy's rint, pairwise sums,
 * argsort of the residuals). */
static void kdi_cl_round_row(int64_t c, const double *x, int64_t *out, double *ints,
                             kdi_cl_key *keys)
{
    for (int64_t j = 0; j < c; j++)
        ints[j] = rint(x[j]);
    const double orig = rint(kdi_cl_sum(x, c, 1));
    double isum = rint(kdi_cl_sum(ints, c, 1));
    /* a non-finite total ends the loop (NumPy's would never end or never
     * start), and so does a step that brings the sums no closer: with exact
     * sums every step closes the gap by `changes` >= 1, but past 2^53 a +-1
     * can be lost in the rounded sum, and NumPy's loop never ends there */
    double gap = fabs(isum - orig);
    while (isfinite(orig) && isfinite(isum) && gap > 1e-6) {
        const double diff = rint(orig - isum);
        const double inc = diff < 0.0 ? -1.0 : 1.0;
        const double ad = fabs(diff);
        const int64_t changes = ad < (double)c ? (int64_t)ad : c;
        for (int64_t j = 0; j < c; j++) {
            keys[j].key = x[j] - ints[j];
            keys[j].row = j;
        }
        kdi_cl_sort(keys, c);
        /* argsort(...)[::-inc][:changes]: from the top when adding */
        for (int64_t r = 0; r < changes; r++) {
            const int64_t j = inc > 0 ? keys[c - 1 - r].row : keys[r].row;
            ints[j] += inc;
        }
        isum = rint(kdi_cl_sum(ints, c, 1));
        const double left = fabs(isum - orig);
        if (!(left < gap))
            break;
        gap = left;
    }
    for (int64_t j = 0; j < c; j++)
        out[j] = kdi_cl_to_int64(ints[j]);
}

void kdi_cl_round_rows(int64_t c, const double *m, int64_t *out, double *work, kdi_cl_key *keys)
{
    for (int64_t i = 0; i < c; i++)
        kdi_cl_round_row(c, m + i * c, out + i * c, work, keys);
}

/* The sum of c entries >= 0 (a caller's joint may hold any int64 >= 0):
 * exact in int64, continued in double once it would pass INT64_MAX (NumPy
 * wraps around there, which no calibration can use). */
static double kdi_cl_row_total(const int64_t *v, int64_t c)
{
    int64_t s = 0;
    for (int64_t j = 0; j < c; j++) {
        if (v[j] > INT64_MAX - s) {
            double d = (double)s;
            for (; j < c; j++)
                d += (double)v[j];
            return d;
        }
        s += v[j];
    }
    return (double)s;
}

void kdi_cl_calibrate(int64_t c, const int64_t *cj, const int64_t *counts, int64_t *out,
                      double *work, kdi_cl_key *keys)
{
    double *cal = work, *rest = work + c * c;
    int64_t total = 0;
    for (int64_t i = 0; i < c; i++) {
        const double rs = kdi_cl_row_total(cj + i * c, c);
        const double d = rs > 0 ? rs : 1e-100;
        for (int64_t j = 0; j < c; j++)
            cal[i * c + j] = (double)cj[i * c + j] / d * (double)counts[i];
        total += counts[i];
    }
    double s = kdi_cl_sum(cal, c * c, 1);
    if (!(s >= 1e-100))
        s = 1e-100;
    for (int64_t k = 0; k < c * c; k++)
        cal[k] = cal[k] / s * (double)total;
    kdi_cl_round_rows(c, cal, out, rest, keys);
}

int kdi_cl_label_is_near_argmax(const float *row, int64_t c, int32_t y)
{
    const double py = (double)row[y] + 1e-6;
    for (int64_t j = 0; j < c; j++) {
        const double v = j == y ? py : (double)row[j];
        if (j < y ? v >= py : v > py)
            return 0;
    }
    return 1;
}
