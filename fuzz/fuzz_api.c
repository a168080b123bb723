/*
 * libFuzzer harness over kdlib's public API (build and run: fuzz/run.sh).
 *
 * The first byte chooses an area (losses, EMA teacher, FlexMatch or the
 * kd_threshold family, label tools); the rest of the input drives a short session of calls in that area:
 * every setter with any value, shapes (0, 1, huge and overflowing N*C),
 * strides, NULL pointers, NaN/Inf/denormal values, labels out of range, and
 * state files that are truncated, bit-flipped or of a wrong version (with or
 * without repaired checksums, so that the meta parser is reached too).
 *
 * Honesty rule: every buffer handed to the library is a real allocation of
 * exactly the size the call claims, so that AddressSanitizer flags any access
 * outside it.  The only exceptions are deliberate: NULL pointers, and sizes
 * that overflow (n * ld beyond int64, allocation sizes beyond what malloc can
 * give); with those the documented contract is that the library rejects the
 * call before touching memory, so the buffers behind them are small dummies.
 *
 * Beyond crashes the harness checks the contract of core.h: every status is a
 * known code, and on any error no output and no caller buffer has changed
 * (every buffer is compared byte for byte with a snapshot), and the handle's
 * state is unchanged.  A violation aborts with a message naming the call.
 */
#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kdlib/ema.h"
#include "kdlib/flexmatch.h"
#include "kdlib/kdlib.h"
#include "kdlib/linear.h"
#include "kdlib/threshold.h"

/* Allocations larger than 1 GiB fail (return NULL) instead of being
 * attempted: huge-but-valid sizes exercise the KD_ERR_OUT_OF_MEMORY paths. */
const char *__asan_default_options(void);
const char *__asan_default_options(void)
{
    return "allocator_may_return_null=1:max_allocation_size_mb=1024:detect_leaks=1";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* ---- contract checks ---------------------------------------------------- */

static void fail(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "fuzz_api: contract violation: ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    abort();
}

static kd_status check_status(const char *call, kd_status st)
{
    if (st < KD_OK || st > KD_ERR_STATE)
        fail("%s returned unknown status %d", call, (int)st);
    const char *s = kd_status_string(st);
    if (!s || !*s)
        fail("kd_status_string(%d) is empty", (int)st);
    return st;
}

#define CALL(expr) check_status(#expr, (expr))

/* ---- fuzz input reader -------------------------------------------------- */

typedef struct {
    const uint8_t *d;
    size_t n, i;
} rd;

static uint8_t r8(rd *r) { return r->i < r->n ? r->d[r->i++] : 0; }
static int rmore(const rd *r) { return r->i < r->n; }
static uint32_t r32(rd *r)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++)
        v |= (uint32_t)r8(r) << (8 * k);
    return v;
}
static uint64_t r64(rd *r) { return (uint64_t)r32(r) | ((uint64_t)r32(r) << 32); }
static unsigned rpick(rd *r, unsigned k) { return r8(r) % k; }

static const int64_t INTERESTING_I64[] = {0,
                                          1,
                                          2,
                                          3,
                                          4,
                                          5,
                                          7,
                                          8,
                                          10,
                                          16,
                                          -1,
                                          -2,
                                          -100,
                                          -101,
                                          31,
                                          32,
                                          33,
                                          64,
                                          100,
                                          127,
                                          128,
                                          255,
                                          256,
                                          1000,
                                          1024,
                                          1025,
                                          4095,
                                          4096,
                                          4097,
                                          65535,
                                          65536,
                                          INT32_MAX,
                                          (int64_t)INT32_MAX + 1,
                                          INT32_MIN,
                                          (int64_t)INT32_MIN - 1,
                                          INT64_MAX,
                                          INT64_MIN,
                                          INT64_MAX - 1,
                                          (int64_t)1 << 32,
                                          (int64_t)1 << 40,
                                          ((int64_t)1 << 40) + 1,
                                          (int64_t)1 << 62,
                                          ((int64_t)1 << 30) + 1};
#define NI64 (sizeof INTERESTING_I64 / sizeof INTERESTING_I64[0])

static int64_t ri64(rd *r)
{
    uint8_t b = r8(r);
    if (b < 200)
        return INTERESTING_I64[b % NI64];
    if (b < 230)
        return (int64_t)(b - 215);
    return (int64_t)r64(r);
}

static double rf64(rd *r)
{
    static const double v[] = {0.0,
                               -0.0,
                               1.0,
                               -1.0,
                               0.5,
                               0.7,
                               0.9,
                               0.95,
                               0.999,
                               2.0,
                               4.0,
                               10.0,
                               100.0,
                               1e-7,
                               1e-38,
                               1e-45,
                               4.9e-324,
                               FLT_MAX,
                               1e39,
                               DBL_MAX,
                               -DBL_MAX,
                               NAN,
                               -NAN,
                               INFINITY,
                               -INFINITY,
                               1.0 + DBL_EPSILON,
                               1.0 - DBL_EPSILON / 2,
                               1.0000001,
                               0.99999994,
                               1e4,
                               -1e4,
                               1e-300,
                               0.25,
                               3.0,
                               1024.0,
                               4096.0,
                               4097.0,
                               -100.0,
                               2147483648.0};
    uint8_t b = r8(r);
    if (b < 200)
        return v[b % (sizeof v / sizeof v[0])];
    if (b < 230)
        return (double)(b - 200) / 29.0;
    uint64_t bits = r64(r);
    double d;
    memcpy(&d, &bits, sizeof d);
    return d;
}

/* A logit-like value: mostly small, sometimes extreme or not finite. */
static float rlogit(rd *r, size_t k)
{
    static const float sp[] = {NAN,      INFINITY, -INFINITY, 1e4f,  -1e4f, FLT_MAX,
                               -FLT_MAX, FLT_MIN,  1e-45f,    -0.0f, 1e38f, 88.7f,
                               -103.9f,  3e4f,     1e-40f,    0.5f};
    if (!rmore(r))
        return (float)((int)(k * 37 % 23) - 11) * 0.3f;
    uint8_t b = r8(r);
    if (b < 224)
        return ((int)b - 112) * 0.125f;
    return sp[b & 15];
}

/* A probability-like value: mostly in [0, 1], sometimes not. */
static float rprob(rd *r, size_t k)
{
    static const float sp[] = {NAN, INFINITY, -1e-45f, 1.0000001f, -0.0f, 2.0f, 1e-45f, -1.0f};
    if (!rmore(r))
        return (float)(k % 7) / 7.0f;
    uint8_t b = r8(r);
    if (b < 248)
        return (float)b / 247.0f;
    return sp[b & 7];
}

/* ---- allocations of one session, with snapshots for canary checks -------- */

#define MAX_ALLOCS 256
#define MAXR 64 /* largest row count the harness really allocates */

typedef struct {
    void *p;
    size_t size;
    void *snap;
    int output; /* bound as (or containing) an output of the next call */
} alloc_t;

typedef struct {
    alloc_t a[MAX_ALLOCS];
    int n;
} arena;

static void *aalloc(arena *A, size_t size)
{
    if (A->n == MAX_ALLOCS)
        return NULL;
    void *p = malloc(size ? size : 1);
    if (!p)
        abort();
    A->a[A->n].p = p;
    A->a[A->n].size = size;
    A->a[A->n].snap = NULL;
    A->a[A->n].output = 0;
    A->n++;
    return p;
}

static void afree(arena *A)
{
    for (int i = 0; i < A->n; i++) {
        free(A->a[i].p);
        free(A->a[i].snap);
    }
    A->n = 0;
}

static alloc_t *afind(arena *A, const void *p)
{
    for (int i = 0; i < A->n; i++) {
        const char *b = A->a[i].p;
        if ((const char *)p >= b && (const char *)p < b + (A->a[i].size ? A->a[i].size : 1))
            return &A->a[i];
    }
    return NULL;
}

static void asnapshot(arena *A)
{
    for (int i = 0; i < A->n; i++) {
        free(A->a[i].snap);
        A->a[i].snap = malloc(A->a[i].size ? A->a[i].size : 1);
        memcpy(A->a[i].snap, A->a[i].p, A->a[i].size);
    }
}

/* After a call: inputs never change; outputs only on success. */
static void acheck(arena *A, const char *call, kd_status st)
{
    for (int i = 0; i < A->n; i++) {
        if (!A->a[i].snap || (A->a[i].output && st == KD_OK))
            continue;
        if (memcmp(A->a[i].snap, A->a[i].p, A->a[i].size) != 0)
            fail("%s (status %d) changed %s buffer %d of %zu bytes", call, (int)st,
                 A->a[i].output ? "an output" : "an input", i, A->a[i].size);
    }
}

/* The error-message buffer of the label tools is written on failure. */
static void askip(arena *A, const void *p)
{
    alloc_t *a = p ? afind(A, p) : NULL;
    if (a) {
        free(a->snap);
        a->snap = NULL;
    }
}

static void aclear_outputs(arena *A)
{
    for (int i = 0; i < A->n; i++)
        A->a[i].output = 0;
}

static void amark_output(arena *A, const void *p)
{
    alloc_t *a = p ? afind(A, p) : NULL;
    if (a)
        a->output = 1;
}

static float *alloc_floats(arena *A, rd *r, size_t count, int probs)
{
    float *p = aalloc(A, count * sizeof(float));
    if (!p)
        return NULL;
    for (size_t k = 0; k < count; k++)
        p[k] = probs ? rprob(r, k) : rlogit(r, k);
    return p;
}

/* Elements spanned by `rows` rows of stride ld and c columns (0 if rows = 0),
 * or -1 if that does not fit in memory we are willing to allocate. */
static int64_t extent(int64_t rows, int64_t c, int64_t ld)
{
    if (rows <= 0)
        return 0;
    if (rows == 1 && c <= 4096)
        return c;
    if (rows > MAXR || ld > 4096 || c > 4096 || ld < c)
        return -1;
    return (rows - 1) * ld + c;
}

/* A stride for which (rows - 1) * ld + c overflows int64 (rows >= 2). */
static int64_t overflowing_ld(int64_t rows, int64_t c)
{
    int64_t ld = (INT64_MAX - (c > 0 ? c : 1)) / (rows - 1) + 1;
    return ld < c ? c : ld;
}

/* ---- state-file mutation ------------------------------------------------ */

static uint32_t crc32c(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    }
    return c ^ 0xFFFFFFFFu;
}

static void put32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}
static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int k = 0; k < 8; k++)
        v |= (uint64_t)p[k] << (8 * k);
    return v;
}

static char g_dir[256];

static int read_file(const char *path, uint8_t *buf, size_t cap, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    *len = fread(buf, 1, cap, f);
    fclose(f);
    return 0;
}

static void write_file(const char *path, const uint8_t *buf, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        abort();
    if (len && fwrite(buf, 1, len, f) != len)
        abort();
    fclose(f);
}

/* Truncate, flip, overwrite header fields, append; optionally repair CRCs. */
static size_t mutate_state(rd *r, uint8_t *b, size_t len, size_t cap)
{
    unsigned nops = rpick(r, 5);
    for (unsigned k = 0; k < nops; k++) {
        switch (rpick(r, 6)) {
        case 0:
            if (len)
                b[r32(r) % len] ^= (uint8_t)(1u << rpick(r, 8));
            break;
        case 1:
            len = r32(r) % (len + 1);
            break;
        case 2:
            if (len)
                b[r32(r) % len] = r8(r);
            break;
        case 3: {
            static const size_t offs[] = {8, 12, 16, 20, 24, 28, 36, 40, 44, 48, 52, 56};
            size_t off = offs[rpick(r, 12)];
            if (off + 4 <= len)
                put32(b + off, (uint32_t)ri64(r));
            break;
        }
        case 4: {
            size_t add = rpick(r, 16);
            while (add-- && len < cap)
                b[len++] = r8(r);
            break;
        }
        default: /* an 8-byte field at a meta offset */
            if (len >= 44) {
                size_t off = 36 + 8 * rpick(r, 4);
                uint64_t v = (uint64_t)ri64(r);
                if (off + 8 <= len)
                    for (int q = 0; q < 8; q++)
                        b[off + q] = (uint8_t)(v >> (8 * q));
            }
        }
    }
    if (r8(r) & 1 && len >= 36) {
        put32(b + 32, crc32c(b, 32));
        uint64_t m = get64(b + 16), d = get64(b + 24);
        if (m <= len && 40 + m <= len) {
            put32(b + 36 + m, crc32c(b + 36, m));
            if (d <= len && 44 + m + d <= len)
                put32(b + 40 + m + d, crc32c(b + 40 + m, d));
        }
    }
    return len;
}

#define STATE_CAP 65536
static uint8_t g_state[STATE_CAP];

/* ---- losses ------------------------------------------------------------- */

static const int32_t MROLES[] = {KD_ARG_STUDENT,          KD_ARG_TARGET,
                                 KD_ARG_LABELED_MAIN,     KD_ARG_LABELED_ADV,
                                 KD_ARG_UNLABELED_MAIN,   KD_ARG_UNLABELED_ADV,
                                 KD_ARG_GRAD_STUDENT,     KD_ARG_GRAD_TEACHER,
                                 KD_ARG_GRAD_LABELED_ADV, KD_ARG_GRAD_UNLABELED_ADV};
#define NMROLES 10
#define FIRST_OUTPUT 6

static int is_unlabeled_role(int32_t role)
{
    return role == KD_ARG_UNLABELED_MAIN || role == KD_ARG_UNLABELED_ADV ||
           role == KD_ARG_GRAD_UNLABELED_ADV;
}

typedef struct {
    float *buf;
    int64_t ld, rows;
    int bound;
    int ovf; /* ld chosen to overflow for exactly `rows` rows */
} mslot;

typedef struct {
    kd_loss *h;
    int64_t c, n;
    arena A;
    mslot m[NMROLES];
    /* teachers: k = 0 none */
    int32_t tk;
    float *tbuf[4];
    int64_t tld[4], trows;
    float *tweights;
    /* vectors */
    int32_t *labels;
    float *weights, *cthr, *per_sample, *mask;
    int32_t *plabels;
    int64_t vlen;   /* entries of the n-vectors */
    int overflowed; /* some binding relies on an overflowing stride */
} loss_session;

static const int32_t PARAMS[] = {1,  2,  3,  4,  5,  6,  7,  8,  9,  10, 11, 12, 13, 14,
                                 15, 16, 17, 32, 33, 34, 35, 36, 37, 0,  18, 31, 38, -1};

static int64_t nu_rows(loss_session *S, int64_t n)
{
    int64_t nu = -1;
    if (kd_loss_get_int(S->h, KD_PARAM_UNLABELED_ROWS, &nu) != KD_OK)
        return n;
    return nu == -1 ? n : nu;
}

static int64_t rows_for(loss_session *S, int32_t role, int64_t n)
{
    return is_unlabeled_role(role) ? nu_rows(S, n) : n;
}

static float *matrix_buffer(loss_session *S, rd *r, int64_t rows, int64_t ld, int probs)
{
    int64_t e = extent(rows, S->c, ld);
    if (e < 0) /* dummy (one row if possible): only with overflowing shapes */
        return aalloc(&S->A, (S->c >= 1 && S->c <= 4096 ? (size_t)S->c : 1) * sizeof(float));
    return alloc_floats(&S->A, r, (size_t)e, probs);
}

static int64_t pick_ld(loss_session *S, rd *r)
{
    switch (rpick(r, 8)) {
    case 0:
        return S->c + rpick(r, 4);
    case 1:
        return S->c - 1;
    case 2:
        return ri64(r);
    default:
        return S->c;
    }
}

/* Before a compute call over n rows: make every bound matrix honest (enough
 * rows), or, when that many rows cannot be allocated, rebind it with a stride
 * that makes the extent overflow so that the call must be refused. */
static void ensure_rows(loss_session *S, rd *r, int64_t n)
{
    if (n < 0)
        return;
    for (int k = 0; k < NMROLES; k++) {
        mslot *s = &S->m[k];
        if (!s->bound)
            continue;
        int64_t need = rows_for(S, MROLES[k], n);
        if (s->ovf && need != s->rows) { /* fewer rows might not overflow: unbind */
            if (k >= FIRST_OUTPUT)
                kd_loss_bind_output(S->h, MROLES[k], NULL, 0);
            else
                kd_loss_bind_matrix(S->h, MROLES[k], NULL, 0);
            s->bound = s->ovf = 0;
            continue;
        }
        if (need <= s->rows)
            continue;
        if (extent(need, S->c, s->ld) >= 0) {
            float *b = matrix_buffer(S, r, need, s->ld, MROLES[k] == KD_ARG_TARGET);
            if (!b) { /* the arena is full: a too-short buffer must not stay bound */
                if (k >= FIRST_OUTPUT)
                    kd_loss_bind_output(S->h, MROLES[k], NULL, 0);
                else
                    kd_loss_bind_matrix(S->h, MROLES[k], NULL, 0);
                s->bound = s->ovf = 0;
                continue;
            }
            if (k >= FIRST_OUTPUT)
                kd_loss_bind_output(S->h, MROLES[k], b, s->ld);
            else
                kd_loss_bind_matrix(S->h, MROLES[k], b, s->ld);
            s->buf = b;
            s->rows = need;
        } else if (need >= 2) {
            int64_t ld = overflowing_ld(need, S->c);
            S->overflowed = 1;
            kd_status st = k >= FIRST_OUTPUT ? kd_loss_bind_output(S->h, MROLES[k], s->buf, ld)
                                             : kd_loss_bind_matrix(S->h, MROLES[k], s->buf, ld);
            if (st != KD_OK)
                fail("rebinding role %d with ld %lld failed (%d)", (int)MROLES[k], (long long)ld,
                     (int)st);
            s->ld = ld;
            s->rows = need;
            s->ovf = 1;
        } else { /* one row too large to allocate, and no stride can overflow: unbind */
            if (k >= FIRST_OUTPUT)
                kd_loss_bind_output(S->h, MROLES[k], NULL, 0);
            else
                kd_loss_bind_matrix(S->h, MROLES[k], NULL, 0);
            s->bound = s->ovf = 0;
        }
    }
    if (S->tk > 0 && n > S->trows && n < 2) { /* one row that cannot be allocated: unbind */
        for (int q = 0; q < S->tk; q++)
            if (extent(n, S->c, S->tld[q]) < 0) {
                kd_loss_bind_teachers(S->h, 0, NULL, NULL, NULL);
                S->tk = 0;
                break;
            }
    }
    if (S->tk > 0 && n > S->trows) {
        int64_t lds[4];
        const float *ts[4];
        for (int q = 0; q < S->tk; q++) {
            if (extent(n, S->c, S->tld[q]) >= 0) {
                S->tbuf[q] = matrix_buffer(S, r, n, S->tld[q], 0);
                lds[q] = S->tld[q];
            } else {
                lds[q] = n >= 2 ? overflowing_ld(n, S->c) : S->tld[q];
                S->overflowed = 1;
            }
            ts[q] = S->tbuf[q];
            S->tld[q] = lds[q];
        }
        if (S->tk == 1 && !S->tweights) {
            kd_loss_bind_matrix(S->h, KD_ARG_TEACHER, ts[0], lds[0]);
        } else if (kd_loss_bind_teachers(S->h, S->tk, ts, lds, S->tweights) != KD_OK) {
            kd_loss_bind_teachers(S->h, 0, NULL, NULL, NULL);
            S->tk = 0;
        }
        S->trows = n;
    }
    /* n-vectors: reallocate when n grows but stays allocatable. */
    if (n > S->vlen && n <= MAXR) {
        if (S->labels) {
            int32_t *l = aalloc(&S->A, (size_t)n * sizeof(int32_t));
            for (int64_t i = 0; l && i < n; i++)
                l[i] = (int32_t)(r8(r) % (S->c < 250 ? S->c + 2 : 250)) - 1;
            if (l) {
                kd_loss_bind_labels(S->h, l);
                S->labels = l;
            }
        }
        if (S->weights) {
            float *w = alloc_floats(&S->A, r, (size_t)n, 1);
            if (w) {
                kd_loss_bind_weights(S->h, w);
                S->weights = w;
            }
        }
        if (S->per_sample) {
            float *p = alloc_floats(&S->A, r, (size_t)n, 0);
            if (p && kd_loss_bind_output(S->h, KD_ARG_PER_SAMPLE, p, 0) == KD_OK)
                S->per_sample = p;
        }
        if (S->mask) {
            float *p = alloc_floats(&S->A, r, (size_t)n, 0);
            if (p && kd_loss_bind_output(S->h, KD_ARG_MASK, p, 0) == KD_OK)
                S->mask = p;
        }
        if (S->plabels) {
            int32_t *p = aalloc(&S->A, (size_t)n * sizeof(int32_t));
            if (p && kd_loss_bind_output_labels(S->h, KD_ARG_PSEUDO_LABELS, p) == KD_OK)
                S->plabels = p;
        }
        S->vlen = n;
    }
}

static void loss_compute(loss_session *S, rd *r)
{
    unsigned which = rpick(r, 3);
    int64_t n = S->n;
    switch (rpick(r, 8)) {
    case 0: /* fewer rows: only when no stride was made to overflow for S->n rows */
        if (!S->overflowed)
            n = S->n > 0 ? S->n - 1 : 0;
        break;
    case 1:
        n = -1 - (int64_t)rpick(r, 2) * (INT64_MAX - 1);
        break;
    default:
        break;
    }
    ensure_rows(S, r, n);
    int64_t red = 0;
    kd_loss_get_int(S->h, KD_PARAM_REDUCTION, &red);
    size_t cnt = red == KD_REDUCTION_NONE ? (n > 0 && n <= MAXR ? (size_t)n : 1) : 1;
    float *io = alloc_floats(&S->A, r, cnt, 0);
    if (!io)
        return;
    int null_io = rpick(r, 16) == 0;
    aclear_outputs(&S->A);
    for (int k = FIRST_OUTPUT; k < NMROLES; k++)
        if (S->m[k].bound)
            amark_output(&S->A, S->m[k].buf);
    if (which != 1)
        amark_output(&S->A, S->per_sample), amark_output(&S->A, S->mask),
            amark_output(&S->A, S->plabels), amark_output(&S->A, io);
    asnapshot(&S->A);
    kd_status st;
    const char *name;
    if (which == 0) {
        name = "kd_loss_forward";
        st = CALL(kd_loss_forward(S->h, n, null_io ? NULL : io));
    } else if (which == 1) {
        name = "kd_loss_backward";
        st = CALL(kd_loss_backward(S->h, n, null_io ? NULL : io));
    } else {
        name = "kd_loss_forward_backward";
        st = CALL(kd_loss_forward_backward(S->h, n, null_io ? NULL : io));
    }
    if (st != KD_OK && !*kd_loss_last_error(S->h))
        fail("%s failed (%d) without a message", name, (int)st);
    acheck(&S->A, name, st);
}

/* kd_loss_stats_size, kd_loss_local_stats and kd_loss_finish: a valid
 * summed buffer (this rank's statistics times 1 or 2 "ranks"), or one with a
 * broken entry; the outputs (stats, gradient, loss) may overlap the inputs. */
static void loss_split_stats(loss_session *S, rd *r, int32_t kind)
{
    int64_t cnt = -7;
    kd_status st = CALL(kd_loss_stats_size(S->h, rpick(r, 8) ? &cnt : NULL));
    if (st != KD_OK && cnt != -7)
        fail("kd_loss_stats_size failed (%d) but wrote the count", (int)st);
    if (st != KD_OK && !*kd_loss_last_error(S->h))
        fail("kd_loss_stats_size failed (%d) without a message", (int)st);
    const int batch =
        kind == KD_LOSS_CLASS_BALANCE || kind == KD_LOSS_MCC || kind == KD_LOSS_FAIRNESS;
    /* the documented size */
    const int64_t want = kind == KD_LOSS_MCC        ? S->c * S->c + 2
                         : kind == KD_LOSS_FAIRNESS ? 2 * S->c + 1
                                                    : S->c + 1;
    if (st == KD_OK && (!batch || cnt != want))
        fail("kd_loss_stats_size gave %lld for kind %d, C = %lld", (long long)cnt, (int)kind,
             (long long)S->c);
    /* the buffer the call writes (its documented size), even when the size
     * query above was made to fail */
    const int64_t m = batch ? want : 1 + (int64_t)rpick(r, 4);
    if (m > (1 << 20))
        return;
    int64_t n = S->n;
    if (rpick(r, 8) == 0)
        n = -1;
    else if (!S->overflowed && S->n > 0 && rpick(r, 4) == 0)
        n = S->n - 1;
    ensure_rows(S, r, n);
    double *stats = aalloc(&S->A, (size_t)m * sizeof(double));
    if (!stats)
        return;
    for (int64_t k = 0; k < m; k++)
        stats[k] = rf64(r);
    /* the statistics over a bound matrix (aliasing), or their own buffer */
    double *out = stats;
    if (rpick(r, 16) == 0 && S->m[0].bound && S->m[0].rows > 0 && !S->m[0].ovf && n > 0)
        out = (double *)(void *)S->m[0].buf;
    aclear_outputs(&S->A);
    amark_output(&S->A, out);
    asnapshot(&S->A);
    st = CALL(kd_loss_local_stats(S->h, n, rpick(r, 16) ? out : NULL));
    if (st != KD_OK && !*kd_loss_last_error(S->h))
        fail("kd_loss_local_stats failed (%d) without a message", (int)st);
    acheck(&S->A, "kd_loss_local_stats", st);
    if (st == KD_OK && out != stats)
        return; /* the student was overwritten: the handle's reuse does not apply */
    if (st == KD_OK) {
        const double ranks = 1 + rpick(r, 2);
        for (int64_t k = 0; k < m; k++)
            stats[k] *= ranks;
        switch (rpick(r, 8)) {
        case 0:
            stats[m - 1] = rpick(r, 2) ? stats[m - 1] + 0.5 : -1.0; /* a broken count */
            break;
        case 1:
            stats[rpick(r, (unsigned)m)] = rpick(r, 2) ? NAN : INFINITY;
            break;
        default:
            break;
        }
    }
    float *loss = alloc_floats(&S->A, r, 1, 0);
    if (!loss)
        return;
    float *lp = loss;
    if (rpick(r, 16) == 0 && S->m[FIRST_OUTPUT].bound && S->m[FIRST_OUTPUT].rows > 0 &&
        !S->m[FIRST_OUTPUT].ovf)
        lp = S->m[FIRST_OUTPUT].buf; /* the loss over the gradient */
    aclear_outputs(&S->A);
    amark_output(&S->A, lp);
    if (S->m[FIRST_OUTPUT].bound)
        amark_output(&S->A, S->m[FIRST_OUTPUT].buf);
    asnapshot(&S->A);
    st = CALL(kd_loss_finish(S->h, n, rpick(r, 16) ? stats : NULL, rpick(r, 16) ? lp : NULL));
    if (st != KD_OK && !*kd_loss_last_error(S->h))
        fail("kd_loss_finish failed (%d) without a message", (int)st);
    acheck(&S->A, "kd_loss_finish", st);
}

/* A matrix for the fused linear call: rows x cols, or one row with a stride
 * that makes the extent overflow when rows x cols cannot be allocated. */
static float *linear_operand(loss_session *S, rd *r, int64_t rows, int64_t cols, int64_t *ld)
{
    *ld = cols + (rpick(r, 4) == 0 ? (int64_t)rpick(r, 3) : 0);
    int64_t e = extent(rows, cols, *ld);
    if (e >= 0)
        return alloc_floats(&S->A, r, (size_t)(e > 0 ? e : 1), 0);
    if (rows < 2)
        return NULL;
    *ld = overflowing_ld(rows, cols);
    return alloc_floats(&S->A, r, (size_t)cols, 0);
}

/* kd_linear_kl_distill with the handle's bindings: the teacher bound on the
 * handle or given as its own linear layer; outputs optional, sometimes in
 * place over hidden or overlapping an input. */
static void loss_linear(loss_session *S, rd *r)
{
    const int64_t n = S->n, c = S->c; /* 1 to 5000 in a session */
    const int64_t d = 1 + rpick(r, 6), dt = 1 + rpick(r, 4);
    ensure_rows(S, r, n);
    int64_t ld_h, ld_w, ld_th = 0, ld_tw = 0, ld_gh = d, ld_gw = d;
    float *hid = linear_operand(S, r, n, d, &ld_h);
    float *w = linear_operand(S, r, c, d, &ld_w);
    float *b = rpick(r, 2) ? alloc_floats(&S->A, r, (size_t)c, 0) : NULL;
    const int tl = rpick(r, 3) == 0;
    float *th = tl ? linear_operand(S, r, n, dt, &ld_th) : NULL;
    float *tw = tl ? linear_operand(S, r, c, dt, &ld_tw) : NULL;
    float *tb = tl && rpick(r, 2) ? alloc_floats(&S->A, r, (size_t)c, 0) : NULL;
    int64_t red = 0;
    kd_loss_get_int(S->h, KD_PARAM_REDUCTION, &red);
    const size_t nl = red == KD_REDUCTION_NONE ? (n > 0 && n <= MAXR ? (size_t)n : 1) : 1;
    float *loss = alloc_floats(&S->A, r, nl, 0);
    float *gh = NULL, *gw = NULL, *gb = NULL;
    switch (rpick(r, 4)) {
    case 0: /* in place over hidden */
        gh = hid, ld_gh = ld_h;
        break;
    case 1:
        gh = linear_operand(S, r, n, d, &ld_gh);
        break;
    default:
        break;
    }
    if (rpick(r, 2))
        gw = rpick(r, 16) == 0 ? w : linear_operand(S, r, c, d, &ld_gw); /* over weight */
    if (rpick(r, 2))
        gb = rpick(r, 16) == 0 && b ? b : alloc_floats(&S->A, r, (size_t)c, 0);
    if (!hid || !w || !loss || (tl && (!th || !tw)))
        return;
    aclear_outputs(&S->A);
    amark_output(&S->A, loss), amark_output(&S->A, gh), amark_output(&S->A, gw);
    amark_output(&S->A, gb), amark_output(&S->A, S->per_sample);
    asnapshot(&S->A);
    kd_status st =
        CALL(kd_linear_kl_distill(S->h, n, d, hid, ld_h, w, ld_w, b, dt, th, ld_th, tw, ld_tw, tb,
                                  (int64_t)rpick(r, 4), loss, gh, ld_gh, gw, ld_gw, gb));
    if (st != KD_OK && !*kd_loss_last_error(S->h))
        fail("kd_linear_kl_distill failed (%d) without a message", (int)st);
    acheck(&S->A, "kd_linear_kl_distill", st);
}

static void fuzz_loss(rd *r)
{
    /* every kind, then invalid ones: 0, 4 and 9 (unused numbers), the first
     * number past the last kind, -1 and INT32_MAX */
    static const int32_t kinds[] = {
        1, 2, 3, 10, 11, 12, 13, 14, 15, 16, 17, 0, 4, 9, KD_LOSS_FAIRNESS + 1, -1, INT32_MAX};
    static const int64_t cs[] = {1,
                                 2,
                                 3,
                                 4,
                                 5,
                                 7,
                                 10,
                                 16,
                                 33,
                                 0,
                                 -1,
                                 (int64_t)1 << 31,
                                 ((int64_t)1 << 31) + 1,
                                 INT64_MAX,
                                 INT64_MIN,
                                 5000};
    loss_session S;
    memset(&S, 0, sizeof S);
    int32_t kind = kinds[rpick(r, sizeof kinds / sizeof kinds[0])];
    S.c = cs[rpick(r, sizeof cs / sizeof cs[0])];
    /* MCC is O(C^2) per call (the confusion matrix): with coverage instrumentation
     * C = 5000 takes longer than the per-input timeout, so it gets a smaller C */
    if (kind == KD_LOSS_MCC && S.c > 512 && S.c <= INT32_MAX)
        S.c = 512;
    kd_loss *canary = (kd_loss *)(uintptr_t)0x5a5a5a5a;
    kd_loss *h = canary;
    kd_status st = CALL(kd_loss_create(rpick(r, 32) ? &h : NULL, kind, S.c));
    if (st != KD_OK) {
        if (h != canary)
            fail("kd_loss_create failed (%d) but wrote *out", (int)st);
        return;
    }
    S.h = h;
    /* Rows of this session: small, or huge (only overflowing extents). */
    int big_c = S.c > 4096;
    if (big_c || rpick(r, 16) == 0) {
        static const int64_t huge[] = {0, (int64_t)1 << 33, (int64_t)1 << 62, INT64_MAX, 65};
        S.n = huge[rpick(r, 5)];
    } else {
        S.n = rpick(r, 13);
    }
    S.vlen = S.n <= MAXR ? S.n : 1;
    int64_t vl = S.vlen;
    unsigned nops = 1 + rpick(r, 24);
    for (unsigned op = 0; op < nops && rmore(r); op++) {
        unsigned what = rpick(r, 16);
        switch (what) {
        case 0: { /* set_int */
            kd_param p = PARAMS[rpick(r, sizeof PARAMS / sizeof PARAMS[0])];
            int64_t v = ri64(r);
            if (p == KD_PARAM_THREADS && v > 4)
                v = 1 + v % 4; /* keep the fuzzer fast; bounds are tested elsewhere */
            int64_t before = 0, after = 0;
            kd_status g1 = kd_loss_get_int(h, p, &before);
            st = CALL(kd_loss_set_int(h, p, v));
            if (st != KD_OK && g1 == KD_OK) {
                kd_loss_get_int(h, p, &after);
                if (after != before)
                    fail("kd_loss_set_int(%d, %lld) failed but changed the value", p, (long long)v);
            }
            break;
        }
        case 1: { /* set_float */
            kd_param p = PARAMS[rpick(r, sizeof PARAMS / sizeof PARAMS[0])];
            double v = rf64(r), before = 0, after = 0;
            kd_status g1 = kd_loss_get_float(h, p, &before);
            st = CALL(kd_loss_set_float(h, p, v));
            if (st != KD_OK && g1 == KD_OK) {
                kd_loss_get_float(h, p, &after);
                if (memcmp(&after, &before, sizeof after) != 0)
                    fail("kd_loss_set_float(%d, %g) failed but changed the value", p, v);
            }
            break;
        }
        case 2: { /* getters and bounds */
            kd_param p = PARAMS[rpick(r, sizeof PARAMS / sizeof PARAMS[0])];
            int64_t iv = 12345;
            double fv = 12345.0, lo = 7, hi = 7;
            int32_t open = 7;
            if (CALL(kd_loss_get_int(h, p, rpick(r, 8) ? &iv : NULL)) && iv != 12345)
                fail("kd_loss_get_int failed but wrote the value");
            if (CALL(kd_loss_get_float(h, p, rpick(r, 8) ? &fv : NULL)) && fv != 12345.0)
                fail("kd_loss_get_float failed but wrote the value");
            if (CALL(kd_loss_param_bounds(rpick(r, 2) ? kind : (kd_loss_kind)ri64(r), p,
                                          rpick(r, 8) ? &lo : NULL, &hi, &open)) &&
                (lo != 7 || hi != 7 || open != 7))
                fail("kd_loss_param_bounds failed but wrote a bound");
            break;
        }
        case 3:
        case 4:
        case 5: { /* bind a matrix role */
            int k = (int)rpick(r, NMROLES);
            int32_t role = MROLES[k];
            int64_t ld = pick_ld(&S, r);
            int64_t rows = rows_for(&S, role, S.n);
            int ovf = 0;
            float *b = NULL;
            if (rpick(r, 8))
                b = matrix_buffer(&S, r, rows, ld, role == KD_ARG_TARGET);
            if (rows > 0 && extent(rows, S.c, ld) < 0 && b) {
                if (rows < 2 || ld < S.c) {
                    b = NULL; /* cannot make this honest */
                } else {
                    ld = overflowing_ld(rows, S.c);
                    S.overflowed = ovf = 1;
                }
            }
            st = k >= FIRST_OUTPUT ? CALL(kd_loss_bind_output(h, role, b, ld))
                                   : CALL(kd_loss_bind_matrix(h, role, b, ld));
            if (st == KD_OK) {
                S.m[k].buf = b;
                S.m[k].ld = ld;
                S.m[k].rows = rows;
                S.m[k].bound = b != NULL;
                S.m[k].ovf = ovf;
            }
            break;
        }
        case 6: { /* in-place or overlapping output over an input */
            int in = (int)rpick(r, FIRST_OUTPUT), out = FIRST_OUTPUT + (int)rpick(r, 4);
            int64_t rows = rows_for(&S, MROLES[in], S.n);
            int64_t e = extent(rows, S.c, S.c);
            if (e < 0 || rows != rows_for(&S, MROLES[out], S.n))
                break;
            int64_t off = rpick(r, 3) == 0 ? 0 : (int64_t)rpick(r, 4);
            float *b = alloc_floats(&S.A, r, (size_t)(e + off), 0);
            if (!b || kd_loss_bind_matrix(h, MROLES[in], b, S.c) != KD_OK)
                break;
            S.m[in] = (mslot){b, S.c, rows, 1, 0};
            if (CALL(kd_loss_bind_output(h, MROLES[out], b + off, S.c)) == KD_OK)
                S.m[out] = (mslot){b + off, S.c, rows, 1, 0};
            break;
        }
        case 7: { /* teachers */
            int32_t counts[] = {1, 2, 3, 4, 0, -1, 1025, INT32_MAX};
            int32_t cnt = counts[rpick(r, 8)];
            if (rpick(r, 3) == 0) {
                int64_t ld = pick_ld(&S, r);
                float *b = rpick(r, 8) ? matrix_buffer(&S, r, S.n, ld, 0) : NULL;
                if (S.n > 0 && extent(S.n, S.c, ld) < 0 && b) {
                    if (S.n < 2 || ld < S.c)
                        b = NULL;
                    else
                        ld = overflowing_ld(S.n, S.c), S.overflowed = 1;
                }
                if (CALL(kd_loss_bind_matrix(h, KD_ARG_TEACHER, b, ld)) == KD_OK) {
                    S.tk = b ? 1 : 0;
                    S.tbuf[0] = b;
                    S.tld[0] = ld;
                    S.trows = S.n;
                    S.tweights = NULL;
                }
                break;
            }
            int32_t real = cnt >= 1 && cnt <= 4 ? cnt : (cnt == 1025 ? 1025 : 1);
            const float **ts = aalloc(&S.A, (size_t)real * sizeof(float *));
            int64_t *lds = aalloc(&S.A, (size_t)real * sizeof(int64_t));
            float *w = rpick(r, 2) ? alloc_floats(&S.A, r, (size_t)real, 1) : NULL;
            if (!ts || !lds)
                break;
            int64_t ld0 = pick_ld(&S, r);
            float *b0 = matrix_buffer(&S, r, S.n, ld0, 0);
            if (S.n > 0 && extent(S.n, S.c, ld0) < 0) {
                if (S.n < 2 || ld0 < S.c)
                    break;
                ld0 = overflowing_ld(S.n, S.c);
                S.overflowed = 1;
            }
            for (int32_t q = 0; q < real; q++) {
                ts[q] = b0;
                lds[q] = ld0;
            }
            if (real <= 4)
                for (int32_t q = 1; q < real; q++) {
                    int64_t ld = S.c + rpick(r, 2);
                    if (extent(S.n, S.c, ld) >= 0) {
                        ts[q] = matrix_buffer(&S, r, S.n, ld, 0);
                        lds[q] = ld;
                    }
                }
            if (rpick(r, 16) == 0)
                ts[rpick(r, (unsigned)real)] = NULL;
            if (rpick(r, 16) == 0)
                lds[rpick(r, (unsigned)real)] = S.c - 1;
            asnapshot(&S.A);
            aclear_outputs(&S.A);
            st = CALL(kd_loss_bind_teachers(h, cnt, rpick(r, 16) ? ts : NULL,
                                            rpick(r, 16) ? lds : NULL, w));
            acheck(&S.A, "kd_loss_bind_teachers", KD_ERR_IO);
            if (st == KD_OK) {
                if (cnt > 4)
                    fail("kd_loss_bind_teachers accepted count %d", (int)cnt);
                S.tk = cnt;
                for (int32_t q = 0; q < cnt; q++) {
                    S.tbuf[q] = (float *)ts[q];
                    S.tld[q] = lds[q];
                }
                S.trows = S.n;
                S.tweights = w;
            }
            break;
        }
        case 8: { /* labels */
            int32_t *l = NULL;
            if (rpick(r, 8)) {
                l = aalloc(&S.A, (size_t)vl * sizeof(int32_t));
                int64_t ig = -100;
                kd_loss_get_int(h, KD_PARAM_IGNORE_INDEX, &ig);
                for (int64_t i = 0; l && i < vl; i++) {
                    uint8_t b = r8(r);
                    l[i] = b < 200   ? (int32_t)(b % (S.c < 200 ? S.c : 200))
                           : b < 230 ? (int32_t)ig
                                     : (int32_t)ri64(r);
                }
            }
            if (CALL(kd_loss_bind_labels(h, l)) == KD_OK)
                S.labels = l;
            break;
        }
        case 9: { /* weights */
            float *w = rpick(r, 8) ? alloc_floats(&S.A, r, (size_t)vl, 1) : NULL;
            st = rpick(r, 2) ? CALL(kd_loss_bind_weights(h, w))
                             : CALL(kd_loss_bind_vector(h, KD_ARG_WEIGHTS, w));
            if (st == KD_OK)
                S.weights = w;
            break;
        }
        case 10: { /* class vectors: C values (thresholds, FAIRNESS's two) */
            if (big_c)
                break;
            static const int32_t croles[] = {KD_ARG_CLASS_THRESHOLDS, KD_ARG_CLASS_PROBS,
                                             KD_ARG_LABEL_HISTOGRAM};
            float *t = rpick(r, 8) ? alloc_floats(&S.A, r, (size_t)S.c, 1) : NULL;
            if (CALL(kd_loss_bind_vector(h, croles[rpick(r, 3)], t)) == KD_OK)
                S.cthr = t;
            break;
        }
        case 11: { /* vector outputs */
            unsigned v = rpick(r, 3);
            void *p = rpick(r, 8) ? aalloc(&S.A, (size_t)vl * 4) : NULL;
            if (p)
                memset(p, 0x7f, (size_t)vl * 4);
            if (v == 0) {
                if (CALL(kd_loss_bind_output(h, KD_ARG_PER_SAMPLE, p, ri64(r))) == KD_OK)
                    S.per_sample = p;
            } else if (v == 1) {
                if (CALL(kd_loss_bind_output(h, KD_ARG_MASK, p, 0)) == KD_OK)
                    S.mask = p;
            } else if (CALL(kd_loss_bind_output_labels(h, KD_ARG_PSEUDO_LABELS, p)) == KD_OK) {
                S.plabels = p;
            }
            break;
        }
        case 12: { /* roles a function does not take: must be refused */
            static const int32_t bad[] = {0, 8, 9, 15, 28, 47, 100, -1, INT32_MAX};
            int32_t role = bad[rpick(r, 9)];
            float *b = aalloc(&S.A, sizeof(float));
            if (CALL(kd_loss_bind_matrix(h, role, b, S.c)) == KD_OK ||
                CALL(kd_loss_bind_output(h, role, b, S.c)) == KD_OK ||
                CALL(kd_loss_bind_vector(h, role, b)) == KD_OK ||
                CALL(kd_loss_bind_output_labels(h, role, (int32_t *)b)) == KD_OK)
                fail("role %d accepted", (int)role);
            /* a role of the wrong binding function */
            int32_t wrong[] = {KD_ARG_LABELS, KD_ARG_PSEUDO_LABELS, KD_ARG_CLASS_THRESHOLDS,
                               KD_ARG_MASK, KD_ARG_PER_SAMPLE};
            if (CALL(kd_loss_bind_matrix(h, wrong[rpick(r, 5)], b, S.c)) == KD_OK)
                fail("a vector role accepted by kd_loss_bind_matrix");
            break;
        }
        case 13:
            if (!kd_loss_last_error(NULL) || !kd_loss_last_error(h))
                fail("kd_loss_last_error returned NULL");
            loss_compute(&S, r);
            break;
        case 14:
            loss_split_stats(&S, r, kind);
            break;
        default:
            if (rpick(r, 2))
                loss_linear(&S, r);
            else
                loss_compute(&S, r);
        }
    }
    if (rpick(r, 2))
        loss_compute(&S, r);
    kd_loss_destroy(h);
    afree(&S.A);
}

/* ---- EMA teacher -------------------------------------------------------- */

typedef struct {
    float *teacher;
    int64_t total, step;
    double decay;
    int64_t warmup, threads;
} ema_snap;

static void ema_take(kd_ema *e, ema_snap *s)
{
    const float *t = NULL;
    int64_t len = 0;
    kd_ema_teacher_flat(e, &t, &len);
    s->total = len;
    s->teacher = malloc((size_t)len * sizeof(float) + 1);
    memcpy(s->teacher, t, (size_t)len * sizeof(float));
    kd_ema_step(e, &s->step);
    kd_ema_get_float(e, KD_EMA_PARAM_DECAY, &s->decay);
    kd_ema_get_int(e, KD_EMA_PARAM_WARMUP, &s->warmup);
    kd_ema_get_int(e, KD_EMA_PARAM_THREADS, &s->threads);
}

static void ema_same(kd_ema *e, ema_snap *s, const char *call)
{
    ema_snap now;
    ema_take(e, &now);
    if (now.total != s->total || memcmp(now.teacher, s->teacher, (size_t)s->total * 4) != 0 ||
        now.step != s->step || memcmp(&now.decay, &s->decay, sizeof s->decay) != 0 ||
        now.warmup != s->warmup || now.threads != s->threads)
        fail("%s failed but changed the EMA handle", call);
    free(now.teacher);
}

static void fuzz_ema(rd *r)
{
    static const int32_t nas[] = {1, 1, 2, 3, 4, 0, -1, INT32_MIN};
    static const int64_t lens[] = {0,
                                   1,
                                   2,
                                   3,
                                   5,
                                   8,
                                   17,
                                   40,
                                   -1,
                                   INT64_MIN,
                                   (int64_t)1 << 30,
                                   (int64_t)1 << 40,
                                   INT64_MAX,
                                   INT64_MAX / 2 + 1,
                                   (int64_t)1 << 61,
                                   (int64_t)1 << 62};
    arena A = {.n = 0};
    int32_t na = nas[rpick(r, 8)];
    int32_t real = na >= 1 ? na : 1;
    int64_t *lengths = aalloc(&A, (size_t)real * sizeof(int64_t));
    const float **arrays = aalloc(&A, (size_t)real * sizeof(float *));
    int32_t *kinds = rpick(r, 2) ? aalloc(&A, (size_t)real * sizeof(int32_t)) : NULL;
    for (int32_t i = 0; i < real; i++) {
        lengths[i] = rpick(r, 12) ? lens[rpick(r, 8)] : lens[rpick(r, 16)];
        int64_t cnt = lengths[i] > 0 && lengths[i] <= 64 ? lengths[i] : 1;
        arrays[i] = rpick(r, 24) ? alloc_floats(&A, r, (size_t)cnt, 0) : NULL;
        if (lengths[i] == 0 && rpick(r, 2))
            arrays[i] = NULL;
        if (kinds) {
            static const int32_t kv[] = {0, 1, 0, 1, 2, -1, INT32_MAX};
            kinds[i] = kv[rpick(r, 7)];
        }
    }
    kd_ema *canary = (kd_ema *)(uintptr_t)0x5a5a5a5a, *e = canary;
    kd_status st;
    asnapshot(&A);
    if (na == 1 && rpick(r, 2))
        st = CALL(kd_ema_create_flat(rpick(r, 32) ? &e : NULL, arrays[0], lengths[0]));
    else
        st = CALL(kd_ema_create(rpick(r, 32) ? &e : NULL, na, rpick(r, 32) ? arrays : NULL,
                                rpick(r, 32) ? lengths : NULL, kinds));
    acheck(&A, "kd_ema_create", KD_ERR_IO);
    if (st != KD_OK) {
        if (e != canary)
            fail("kd_ema_create failed (%d) but wrote *out", (int)st);
        if (!*kd_ema_last_error(NULL))
            fail("kd_ema_create failed (%d) without a message", (int)st);
        afree(&A);
        return;
    }
    int32_t nar = 0;
    int64_t total = 0;
    if (CALL(kd_ema_shape(e, &nar, &total)) != KD_OK || nar != na)
        fail("kd_ema_shape");
    char path[300], path2[300];
    snprintf(path, sizeof path, "%s/ema.state", g_dir);
    snprintf(path2, sizeof path2, "%s/ema-in.state", g_dir);
    unsigned nops = 1 + rpick(r, 16);
    for (unsigned op = 0; op < nops && rmore(r); op++) {
        ema_snap s0;
        ema_take(e, &s0);
        const char *call = "?";
        aclear_outputs(&A);
        /* student arrays of the registered shape */
        float **stu = aalloc(&A, (size_t)na * sizeof(float *));
        float *flat = alloc_floats(&A, r, (size_t)total, 0);
        if (!stu || !flat) {
            free(s0.teacher);
            break;
        }
        for (int32_t i = 0; i < na; i++)
            stu[i] = lengths[i] > 0 ? alloc_floats(&A, r, (size_t)lengths[i], 0) : NULL;
        const float *tflat = NULL;
        kd_ema_teacher_flat(e, &tflat, NULL);
        if (rpick(r, 16) == 0 && na > 0) { /* overlap with the teacher storage */
            int32_t i = (int32_t)rpick(r, (unsigned)na);
            const float *ti = NULL;
            kd_ema_teacher(e, i, &ti, NULL);
            stu[i] = (float *)ti;
        }
        if (rpick(r, 24) == 0 && na > 0)
            stu[rpick(r, (unsigned)na)] = NULL;
        float *const *su = rpick(r, 24) ? stu : NULL;
        float *fl = rpick(r, 24) ? (rpick(r, 16) ? flat : (float *)tflat) : NULL;
        switch (rpick(r, 14)) {
        case 0:
            call = "kd_ema_set_float";
            st = CALL(kd_ema_set_float(e, (kd_ema_param)ri64(r) % 5, (float)rf64(r)));
            break;
        case 1: {
            call = "kd_ema_set_int";
            kd_ema_param p = (kd_ema_param)(ri64(r) % 5);
            int32_t v = (int32_t)ri64(r);
            if (p == KD_EMA_PARAM_THREADS && v > 4)
                v = 4;
            st = CALL(kd_ema_set_int(e, p, v));
            break;
        }
        case 2: {
            double fv = 9;
            int64_t iv = 9;
            double lo = 9, hi = 9;
            kd_ema_param p = (kd_ema_param)(ri64(r) % 5);
            call = "kd_ema_get";
            if (CALL(kd_ema_get_float(e, p, rpick(r, 8) ? &fv : NULL)) && fv != 9)
                fail("kd_ema_get_float failed but wrote");
            if (CALL(kd_ema_get_int(e, p, rpick(r, 8) ? &iv : NULL)) && iv != 9)
                fail("kd_ema_get_int failed but wrote");
            if (CALL(kd_ema_param_bounds(p, rpick(r, 8) ? &lo : NULL, &hi)) && (lo != 9 || hi != 9))
                fail("kd_ema_param_bounds failed but wrote");
            st = KD_OK;
            break;
        }
        case 3:
            call = "kd_ema_update";
            asnapshot(&A);
            st = CALL(kd_ema_update(e, (const float *const *)su));
            acheck(&A, call, st);
            break;
        case 4:
            call = "kd_ema_update_flat";
            asnapshot(&A);
            st = CALL(kd_ema_update_flat(e, fl));
            acheck(&A, call, st);
            break;
        case 5: {
            int64_t stp = 9, tl = 9;
            double d = 9;
            int32_t nn = 9;
            call = "kd_ema_step";
            if (CALL(kd_ema_step(e, rpick(r, 8) ? &stp : NULL)) && stp != 9)
                fail("kd_ema_step wrote on failure");
            if (CALL(kd_ema_next_decay(e, rpick(r, 8) ? &d : NULL)) && d != 9)
                fail("kd_ema_next_decay wrote on failure");
            if (CALL(kd_ema_shape(e, rpick(r, 4) ? &nn : NULL, rpick(r, 4) ? &tl : NULL)) &&
                (nn != 9 || tl != 9))
                fail("kd_ema_shape wrote on failure");
            st = KD_OK;
            break;
        }
        case 6: {
            const float *d = (const float *)&A;
            int64_t len = 9;
            int32_t idx = (int32_t)ri64(r);
            call = "kd_ema_teacher";
            st = CALL(kd_ema_teacher(e, idx, rpick(r, 8) ? &d : NULL, rpick(r, 2) ? &len : NULL));
            if (st && (d != (const float *)&A || len != 9))
                fail("kd_ema_teacher wrote on failure");
            if (!st && (idx < 0 || idx >= na))
                fail("kd_ema_teacher accepted index %d", (int)idx);
            break;
        }
        case 7:
            call = "kd_ema_copy_to";
            for (int32_t i = 0; i < na; i++)
                amark_output(&A, stu[i]);
            amark_output(&A, flat);
            asnapshot(&A);
            st = rpick(r, 2) ? CALL(kd_ema_copy_to(e, su)) : CALL(kd_ema_copy_to_flat(e, fl));
            acheck(&A, call, st);
            break;
        case 8:
            call = "kd_ema_swap";
            for (int32_t i = 0; i < na; i++)
                amark_output(&A, stu[i]);
            amark_output(&A, flat);
            asnapshot(&A);
            st = rpick(r, 2) ? CALL(kd_ema_swap(e, su)) : CALL(kd_ema_swap_flat(e, fl));
            acheck(&A, call, st);
            break;
        case 9:
            call = "kd_ema_reset";
            asnapshot(&A);
            st = rpick(r, 2) ? CALL(kd_ema_reset(e, (const float *const *)su))
                             : CALL(kd_ema_reset_flat(e, fl));
            acheck(&A, call, st);
            break;
        case 10:
        case 11: { /* save, mutate, load */
            size_t len = 0;
            call = "kd_ema_load";
            if (CALL(kd_ema_save(e, path)) != KD_OK || read_file(path, g_state, STATE_CAP, &len))
                fail("kd_ema_save to %s", path);
            len = mutate_state(r, g_state, len, STATE_CAP);
            write_file(path2, g_state, len);
            st = CALL(kd_ema_load(e, path2));
            break;
        }
        case 12: { /* raw bytes as a state file */
            size_t len = 0;
            while (rmore(r) && len < 2048)
                g_state[len++] = r8(r);
            write_file(path2, g_state, len);
            call = "kd_ema_load(raw)";
            st = CALL(kd_ema_load(e, path2));
            break;
        }
        default: {
            static const char *bad[] = {"/nonexistent/x/y", "", ".", "/dev/null", "/proc/self"};
            call = "kd_ema_load(bad path)";
            st = CALL(kd_ema_load(e, rpick(r, 6) ? bad[rpick(r, 5)] : NULL));
            if (st == KD_OK)
                fail("kd_ema_load of a bad path succeeded");
        }
        }
        if (st != KD_OK) {
            if (!*kd_ema_last_error(e))
                fail("%s failed without a message", call);
            ema_same(e, &s0, call);
        }
        free(s0.teacher);
    }
    kd_ema_destroy(e);
    afree(&A);
}

/* ---- FlexMatch ------------------------------------------------------------ */

typedef struct {
    int32_t *pred;
    int64_t *sigma, unused, nn, cc;
    float tau;
    int64_t mapping, warmup, strict;
} fm_snap;

static void fm_take(kd_flexmatch *f, int64_t N, int64_t C, fm_snap *s)
{
    s->pred = malloc((size_t)N * 4);
    s->sigma = malloc((size_t)C * 8);
    kd_flexmatch_predictions(f, s->pred);
    kd_flexmatch_counts(f, s->sigma, &s->unused);
    kd_flexmatch_get_float(f, KD_FLEXMATCH_PARAM_THRESHOLD, &s->tau);
    kd_flexmatch_get_int(f, KD_FLEXMATCH_PARAM_MAPPING, &s->mapping);
    kd_flexmatch_get_int(f, KD_FLEXMATCH_PARAM_WARMUP, &s->warmup);
    kd_flexmatch_get_int(f, KD_FLEXMATCH_PARAM_NON_STRICT, &s->strict);
    kd_flexmatch_get_int(f, KD_FLEXMATCH_PARAM_NUM_SAMPLES, &s->nn);
    kd_flexmatch_get_int(f, KD_FLEXMATCH_PARAM_NUM_CLASSES, &s->cc);
}

static void fm_free(fm_snap *s)
{
    free(s->pred);
    free(s->sigma);
}

static void fm_same(kd_flexmatch *f, int64_t N, int64_t C, fm_snap *s, const char *call)
{
    fm_snap t;
    fm_take(f, N, C, &t);
    if (memcmp(t.pred, s->pred, (size_t)N * 4) || memcmp(t.sigma, s->sigma, (size_t)C * 8) ||
        t.unused != s->unused || memcmp(&t.tau, &s->tau, 4) || t.mapping != s->mapping ||
        t.warmup != s->warmup || t.strict != s->strict || t.nn != s->nn || t.cc != s->cc)
        fail("%s failed but changed the FlexMatch handle", call);
    fm_free(&t);
}

static void fuzz_flexmatch(rd *r)
{
    static const int64_t ns[] = {1,
                                 2,
                                 3,
                                 5,
                                 8,
                                 16,
                                 64,
                                 0,
                                 -1,
                                 ((int64_t)1 << 40) + 1,
                                 INT64_MAX,
                                 INT64_MIN,
                                 (int64_t)1 << 40,
                                 1000};
    static const int64_t cs[] = {
        1, 2, 3, 4, 7, 10, 0, -1, ((int64_t)1 << 30) + 1, (int64_t)1 << 30, 100};
    arena A = {.n = 0};
    int64_t N = ns[rpick(r, 14)], C = cs[rpick(r, 11)];
    kd_flexmatch *canary = (kd_flexmatch *)(uintptr_t)0x5a5a5a5a, *f = canary;
    kd_status st = CALL(kd_flexmatch_create(rpick(r, 32) ? &f : NULL, N, C));
    if (st != KD_OK) {
        if (f != canary)
            fail("kd_flexmatch_create failed (%d) but wrote *out", (int)st);
        if (!*kd_flexmatch_last_error(NULL))
            fail("kd_flexmatch_create failed without a message");
        return;
    }
    if (N > 4096 || C > 4096)
        fail("kd_flexmatch_create(%lld, %lld) succeeded within 1 GiB?", (long long)N, (long long)C);
    /* A second handle of another shape, to load mismatching files into. */
    kd_flexmatch *g = NULL;
    int64_t N2 = N, C2 = C;
    if (rpick(r, 4) == 0) {
        N2 = 1 + rpick(r, 8);
        C2 = 1 + rpick(r, 5);
        if (kd_flexmatch_create(&g, N2, C2) != KD_OK)
            g = NULL;
    }
    char path[300], path2[300];
    snprintf(path, sizeof path, "%s/fm.state", g_dir);
    snprintf(path2, sizeof path2, "%s/fm-in.state", g_dir);
    unsigned nops = 1 + rpick(r, 16);
    for (unsigned op = 0; op < nops && rmore(r); op++) {
        fm_snap s0;
        fm_take(f, N, C, &s0);
        const char *call = "?";
        kd_flexmatch *target = f, *msg = f; /* msg: handle that gets the message */
        aclear_outputs(&A);
        switch (rpick(r, 12)) {
        case 0:
            call = "kd_flexmatch_set_float";
            st = CALL(kd_flexmatch_set_float(f, (kd_flexmatch_param)(ri64(r) % 8), (float)rf64(r)));
            break;
        case 1:
            call = "kd_flexmatch_set_int";
            st = CALL(kd_flexmatch_set_int(f, (kd_flexmatch_param)(ri64(r) % 8), ri64(r)));
            break;
        case 2: {
            float fv = 9;
            int64_t iv = 9;
            double lo = 9, hi = 9;
            kd_flexmatch_param p = (kd_flexmatch_param)(ri64(r) % 8);
            call = "kd_flexmatch_get";
            if (CALL(kd_flexmatch_get_float(f, p, rpick(r, 8) ? &fv : NULL)) && fv != 9)
                fail("kd_flexmatch_get_float wrote on failure");
            if (CALL(kd_flexmatch_get_int(f, p, rpick(r, 8) ? &iv : NULL)) && iv != 9)
                fail("kd_flexmatch_get_int wrote on failure");
            if (CALL(kd_flexmatch_param_bounds(p, &lo, rpick(r, 8) ? &hi : NULL)) &&
                (lo != 9 || hi != 9))
                fail("kd_flexmatch_param_bounds wrote on failure");
            st = KD_OK;
            break;
        }
        case 3:
        case 4:
        case 5: {
            int64_t n = rpick(r, 17);
            if (rpick(r, 16) == 0)
                n = rpick(r, 2) ? -1 : INT64_MIN;
            size_t cnt = n > 0 ? (size_t)n : 0;
            int64_t *idx = aalloc(&A, cnt * 8);
            float *conf = alloc_floats(&A, r, cnt, 1);
            int32_t *pr = aalloc(&A, cnt * 4);
            if (!idx || !conf || !pr)
                break;
            for (size_t k = 0; k < cnt; k++) {
                uint8_t b = r8(r);
                idx[k] = b < 240 ? (int64_t)(b % N) : ri64(r);
                b = r8(r);
                pr[k] = b < 240 ? (int32_t)(b % C) : (int32_t)ri64(r);
                if (r8(r) < 128)
                    conf[k] = 1.0f; /* selected */
            }
            call = "kd_flexmatch_update";
            asnapshot(&A);
            st = CALL(kd_flexmatch_update(f, n, rpick(r, 24) ? idx : NULL,
                                          rpick(r, 24) ? conf : NULL, rpick(r, 24) ? pr : NULL));
            acheck(&A, call, st);
            break;
        }
        case 6: {
            float *t = alloc_floats(&A, r, (size_t)C, 1);
            int64_t *sg = aalloc(&A, (size_t)C * 8);
            int32_t *pp = aalloc(&A, (size_t)N * 4);
            int64_t *un = aalloc(&A, 8);
            if (!t || !sg || !pp || !un)
                break;
            amark_output(&A, t), amark_output(&A, sg), amark_output(&A, pp), amark_output(&A, un);
            asnapshot(&A);
            call = "kd_flexmatch_read";
            switch (rpick(r, 4)) {
            case 0:
                st = CALL(kd_flexmatch_thresholds(f, rpick(r, 8) ? t : NULL));
                break;
            case 1:
                st = CALL(kd_flexmatch_learning_effect(f, rpick(r, 8) ? t : NULL));
                if (st == KD_OK)
                    for (int64_t c = 0; c < C; c++)
                        if (!(t[c] >= 0.0f && t[c] <= 1.0f))
                            fail("learning effect %g outside [0, 1]", (double)t[c]);
                break;
            case 2:
                st = CALL(kd_flexmatch_counts(rpick(r, 16) ? f : NULL, rpick(r, 2) ? sg : NULL,
                                              rpick(r, 2) ? un : NULL));
                break;
            default:
                st = CALL(kd_flexmatch_predictions(f, rpick(r, 8) ? pp : NULL));
            }
            acheck(&A, call, st);
            break;
        }
        case 7:
            call = "kd_flexmatch_reset";
            if (rpick(r, 16) == 0)
                msg = NULL;
            st = CALL(kd_flexmatch_reset(msg));
            break;
        case 8:
        case 9: {
            size_t len = 0;
            if (CALL(kd_flexmatch_save(f, path)) != KD_OK ||
                read_file(path, g_state, STATE_CAP, &len))
                fail("kd_flexmatch_save to %s", path);
            len = mutate_state(r, g_state, len, STATE_CAP);
            write_file(path2, g_state, len);
            call = "kd_flexmatch_load";
            if (g && rpick(r, 2)) {
                target = g;
                fm_free(&s0);
                fm_take(g, N2, C2, &s0);
            }
            st = CALL(kd_flexmatch_load(target, path2));
            break;
        }
        case 10: {
            size_t len = 0;
            while (rmore(r) && len < 2048)
                g_state[len++] = r8(r);
            write_file(path2, g_state, len);
            call = "kd_flexmatch_load(raw)";
            st = CALL(kd_flexmatch_load(f, path2));
            break;
        }
        default: {
            static const char *bad[] = {"/nonexistent/x/y", "", ".", "/dev/null", "/proc/self"};
            call = "kd_flexmatch_load(bad path)";
            st = CALL(kd_flexmatch_load(f, rpick(r, 6) ? bad[rpick(r, 5)] : NULL));
            if (st == KD_OK)
                fail("kd_flexmatch_load of a bad path succeeded");
        }
        }
        if (st != KD_OK) {
            if (target == g)
                msg = g;
            if (msg && !*kd_flexmatch_last_error(msg) && strcmp(call, "kd_flexmatch_read"))
                fail("%s failed without a message", call);
            if (target == g)
                fm_same(g, N2, C2, &s0, call);
            else
                fm_same(f, N, C, &s0, call);
        }
        fm_free(&s0);
    }
    kd_flexmatch_destroy(f);
    kd_flexmatch_destroy(g);
    afree(&A);
}

/* ---- kd_threshold: FlexMatch, FreeMatch, SoftMatch ---------------------- */

/* The whole state of a handle, as its state file (parameters and arrays). */
static size_t th_take(const kd_threshold *t, const char *path, uint8_t *buf)
{
    size_t len = 0;
    if (kd_threshold_save(t, path) != KD_OK || read_file(path, buf, STATE_CAP, &len))
        fail("kd_threshold_save to %s", path);
    return len;
}

static void fuzz_threshold(rd *r)
{
    static const int64_t ns[] = {1, 2, 3, 8, 64, 0, -1, ((int64_t)1 << 40) + 1, INT64_MAX, 500};
    static const int64_t cs[] = {1, 2, 3, 4, 10, 0, -1, ((int64_t)1 << 30) + 1, 100};
    static uint8_t before[STATE_CAP], after[STATE_CAP];
    arena A = {.n = 0};
    const kd_threshold_algorithm algo = (kd_threshold_algorithm)rpick(r, 8); /* 0, 7: unknown */
    const int64_t N = ns[rpick(r, 10)], C = cs[rpick(r, 9)];
    kd_threshold *canary = (kd_threshold *)(uintptr_t)0x5a5a5a5a, *t = canary;
    kd_status st = CALL(kd_threshold_create(rpick(r, 32) ? &t : NULL, algo, N, C));
    if (st != KD_OK) {
        if (t != canary)
            fail("kd_threshold_create failed (%d) but wrote *out", (int)st);
        if (!*kd_threshold_last_error(NULL))
            fail("kd_threshold_create failed without a message");
        return;
    }
    if (N > 4096 || C > 4096)
        fail("kd_threshold_create(%lld, %lld) succeeded within 1 GiB?", (long long)N, (long long)C);
    char path[300], path2[300], snap[300];
    snprintf(path, sizeof path, "%s/th.state", g_dir);
    snprintf(path2, sizeof path2, "%s/th-in.state", g_dir);
    snprintf(snap, sizeof snap, "%s/th-snap.state", g_dir);
    unsigned nops = 1 + rpick(r, 16);
    for (unsigned op = 0; op < nops && rmore(r); op++) {
        const size_t len0 = th_take(t, snap, before);
        const char *call = "?";
        aclear_outputs(&A);
        const int64_t n = rpick(r, 16) == 0 ? (rpick(r, 2) ? -1 : INT64_MIN) : rpick(r, 13);
        const size_t cnt = n > 0 ? (size_t)n : 0;
        int64_t ld = C + rpick(r, 3);
        if (rpick(r, 16) == 0)
            ld = rpick(r, 2) ? C - 1 : INT64_MAX / 2;
        float *w = NULL;
        int32_t *pl = NULL;
        switch (rpick(r, 10)) {
        case 0:
            call = "kd_threshold_set_float";
            st = CALL(kd_threshold_set_float(t, (kd_threshold_param)(ri64(r) % 24), rf64(r)));
            break;
        case 1:
            call = "kd_threshold_set_int";
            st = CALL(kd_threshold_set_int(t, (kd_threshold_param)(ri64(r) % 24), ri64(r)));
            break;
        case 2:
        case 3: { /* probability rows: update, or weights */
            const size_t elems = cnt ? (cnt - 1) * (size_t)(ld > C + 2 ? C : ld) + (size_t)C : 0;
            if (ld > C + 2 && cnt > 1)
                break; /* an overflowing ld: only with n <= 1 */
            float *probs = alloc_floats(&A, r, elems, 1);
            int64_t *idx = aalloc(&A, cnt * 8);
            w = aalloc(&A, cnt * 4);
            pl = aalloc(&A, cnt * 4);
            if (!probs || !idx || !w || !pl)
                break;
            for (size_t k = 0; k < cnt; k++)
                idx[k] = r8(r) < 240 ? (int64_t)(r8(r) % (uint8_t)(N < 255 ? N : 255)) : ri64(r);
            amark_output(&A, w), amark_output(&A, pl);
            asnapshot(&A);
            const unsigned which = rpick(r, 3);
            if (which == 0) {
                call = "kd_threshold_update_probs";
                st = CALL(kd_threshold_update_probs(t, n, C, rpick(r, 24) ? probs : NULL, ld,
                                                    rpick(r, 8) ? idx : NULL));
                w = NULL;
            } else if (which == 1) {
                call = "kd_threshold_update_labeled_probs";
                st = CALL(
                    kd_threshold_update_labeled_probs(t, n, C, rpick(r, 24) ? probs : NULL, ld));
                w = NULL;
            } else {
                call = "kd_threshold_weights_probs";
                float *wo = rpick(r, 16) ? w : (rpick(r, 2) ? NULL : probs); /* aliasing */
                st = CALL(kd_threshold_weights_probs(t, n, C, rpick(r, 24) ? probs : NULL, ld, wo,
                                                     rpick(r, 2) ? pl : NULL));
                if (wo != w)
                    w = NULL;
            }
            acheck(&A, call, st);
            break;
        }
        case 4:
        case 5: { /* confidences and predictions */
            int64_t *idx = aalloc(&A, cnt * 8);
            float *conf = alloc_floats(&A, r, cnt, 1);
            int32_t *pr = aalloc(&A, cnt * 4);
            w = aalloc(&A, cnt * 4);
            if (!idx || !conf || !pr || !w)
                break;
            for (size_t k = 0; k < cnt; k++) {
                idx[k] = r8(r) < 240 ? (int64_t)(r8(r) % (uint8_t)(N < 255 ? N : 255)) : ri64(r);
                pr[k] = r8(r) < 240 ? (int32_t)(r8(r) % (uint8_t)(C < 255 ? C : 255))
                                    : (int32_t)ri64(r);
            }
            amark_output(&A, w);
            asnapshot(&A);
            if (rpick(r, 2)) {
                call = "kd_threshold_update";
                st =
                    CALL(kd_threshold_update(t, n, rpick(r, 24) ? idx : NULL,
                                             rpick(r, 24) ? conf : NULL, rpick(r, 24) ? pr : NULL));
                w = NULL;
            } else {
                call = "kd_threshold_weights";
                float *wo = rpick(r, 16) ? w : (float *)(void *)pr; /* aliasing */
                st = CALL(kd_threshold_weights(t, n, conf, pr, wo));
                if (wo != w)
                    w = NULL;
            }
            acheck(&A, call, st);
            break;
        }
        case 6: {
            call = "kd_threshold_get_floats";
            const int64_t count = rpick(r, 3) == 0 ? N : (rpick(r, 2) ? C : 1);
            float *o = aalloc(&A, (size_t)count * 4);
            if (!o)
                break;
            st = CALL(kd_threshold_get_floats(t, (kd_threshold_state)rpick(r, 21), count, o));
            break;
        }
        case 7: { /* save, mutate, load */
            size_t len = th_take(t, path, g_state);
            len = mutate_state(r, g_state, len, STATE_CAP);
            write_file(path2, g_state, len);
            call = "kd_threshold_load";
            st = CALL(kd_threshold_load(t, path2));
            break;
        }
        case 8: { /* split statistics: local (and labelled) stats, perhaps corrupted, applied */
            /* the buffer holds the real size even when the fuzzed call below is
             * refused (a NULL size pointer): local_stats writes that many; asked
             * first, so the fuzzed call's message is the one checked */
            int64_t real = 0;
            const int64_t cap = kd_threshold_stats_size(t, &real) == KD_OK ? real : 4;
            int64_t size = 0;
            call = "kd_threshold_stats_size";
            st = CALL(kd_threshold_stats_size(t, rpick(r, 32) ? &size : NULL));
            if (st == KD_OK && (size < 1 || size > 3 + 3 * C))
                fail("kd_threshold_stats_size: %lld doubles for C = %lld", (long long)size,
                     (long long)C);
            if (ld > C + 2 && cnt > 1)
                break;
            const size_t elems = cnt ? (cnt - 1) * (size_t)(ld > C + 2 ? C : ld) + (size_t)C : 0;
            float *probs = alloc_floats(&A, r, elems, 1);
            double *stats = aalloc(&A, (size_t)cap * sizeof(double));
            if (!probs || !stats)
                break;
            for (int64_t i = 0; i < cap; i++)
                stats[i] = 0.0;
            amark_output(&A, stats);
            asnapshot(&A);
            const int labeled = rpick(r, 3) == 0;
            call = labeled ? "kd_threshold_local_labeled_stats" : "kd_threshold_local_stats";
            float *pin = rpick(r, 24) ? probs : NULL;
            double *sout = rpick(r, 24) ? stats : NULL;
            st = labeled ? CALL(kd_threshold_local_labeled_stats(t, n, C, pin, ld, sout))
                         : CALL(kd_threshold_local_stats(t, n, C, pin, ld, sout));
            acheck(&A, call, st);
            if (st != KD_OK || size == 0)
                break;
            if (rpick(r, 4) == 0) { /* a corrupted or rescaled sum */
                static const double odd[] = {NAN, INFINITY, -1.0, 0.5, 1e300, 3.0};
                stats[rpick(r, (unsigned)size)] = odd[rpick(r, 6)];
            }
            aclear_outputs(&A);
            asnapshot(&A);
            call = "kd_threshold_update_stats";
            st = CALL(kd_threshold_update_stats(t, rpick(r, 32) ? stats : NULL));
            acheck(&A, call, st);
            break;
        }
        default:
            call = "kd_threshold_reset";
            st = CALL(kd_threshold_reset(t));
        }
        if (st == KD_OK && w && n > 0)
            for (size_t k = 0; k < cnt; k++)
                if (!(w[k] >= 0.0f && w[k] <= 1.0f))
                    fail("%s: weight %g outside [0, 1]", call, (double)w[k]);
        if (st != KD_OK) {
            if (!*kd_threshold_last_error(t) && strcmp(call, "?"))
                fail("%s failed without a message", call);
            const size_t len1 = th_take(t, snap, after);
            if (len1 != len0 || memcmp(before, after, len0))
                fail("%s failed but changed the %s handle", call,
                     kd_threshold_algorithm_name(algo));
        }
    }
    kd_threshold_destroy(t);
    afree(&A);
}

/* ---- label tools -------------------------------------------------------- */

static void check_err(const char *err, size_t size, const char *call, kd_status st)
{
    if (size == 0)
        return;
    if (!memchr(err, 0, size))
        fail("%s: message not NUL-terminated within err_size", call);
    if (st != KD_OK && size > 1 && !err[0])
        fail("%s failed (%d) without a message", call, (int)st);
    if (st == KD_OK && err[0])
        fail("%s succeeded with the message \"%.*s\"", call, (int)size, err);
}

static void fuzz_labels(rd *r)
{
    arena A = {.n = 0};
    int64_t n = rpick(r, 10), c = 1 + rpick(r, 9);
    int64_t ld = c + (rpick(r, 4) == 0 ? rpick(r, 3) : 0);
    switch (rpick(r, 16)) {
    case 0:
        n = -1 - rpick(r, 2);
        break;
    case 1:
        c = rpick(r, 2) ? 0 : ri64(r);
        break;
    case 2:
        ld = c - 1 - rpick(r, 2);
        break;
    case 3: /* overflowing extent: buffers are dummies */
        n = rpick(r, 2) ? INT64_MAX : (int64_t)1 << 62;
        ld = rpick(r, 2) ? overflowing_ld(n, c) : ((int64_t)1 << 40);
        break;
    default:
        break;
    }
    /* A shape we cannot allocate must be one the documentation rejects. */
    int64_t e = extent(n, c, ld);
    if (e < 0 &&
        !(n < 0 || c < 1 || c > INT32_MAX || ld < c || (n >= 2 && ld > (INT64_MAX - c) / (n - 1))))
        n = 0, e = 0;
    int honest = e >= 0;
    size_t me = honest ? (size_t)e : 1, vn = honest && n > 0 ? (size_t)n : 1;
    size_t cn = c >= 1 && c <= 4096 ? (size_t)c : 1;
    int probs = rpick(r, 4) != 0;
    float *x = alloc_floats(&A, r, me, probs);
    int32_t ig = rpick(r, 4) ? -100 : (int32_t)ri64(r);
    int32_t *labels = aalloc(&A, vn * 4);
    for (size_t i = 0; labels && i < vn; i++) {
        uint8_t b = r8(r);
        labels[i] = b < 220 ? (int32_t)(b % (cn + 1)) : b < 240 ? ig : (int32_t)ri64(r);
    }
    static const size_t esz[] = {0, 1, 2, 16, 256};
    size_t err_size = esz[rpick(r, 5)];
    char *err = rpick(r, 8) ? aalloc(&A, err_size) : NULL;
    if (err)
        memset(err, 'x', err_size);
    else
        err_size = rpick(r, 2) ? 0 : 64; /* NULL with a size: must be tolerated */
    float *o1 = alloc_floats(&A, r, vn, 0);
    int32_t *o2 = aalloc(&A, vn * 4);
    float *o3 = alloc_floats(&A, r, vn, 0);
    int64_t *o4 = aalloc(&A, vn * 8);
    int64_t *o5 = aalloc(&A, 8);
    uint8_t *o6 = aalloc(&A, vn);
    float *ct = alloc_floats(&A, r, cn, 1);
    if (!x || !labels || !o1 || !o2 || !o3 || !o4 || !o5 || !o6 || !ct)
        goto out;
    memset(o2, 0x55, vn * 4), memset(o4, 0x55, vn * 8), memset(o5, 0x55, 8), memset(o6, 0x55, vn);
    aclear_outputs(&A);
    amark_output(&A, o1), amark_output(&A, o2), amark_output(&A, o3), amark_output(&A, o4);
    amark_output(&A, o5), amark_output(&A, o6), amark_output(&A, err);
    const char *call;
    kd_status st;
    unsigned which = rpick(r, 6);
    if (which == 2)
        amark_output(&A, ct); /* class_thresholds is an output there */
    asnapshot(&A);
    switch (which) {
    case 0: {
        static const int32_t flags[] = {0, 1, 2, 3, 4, -1, 8};
        call = "kd_select_pseudo_labels";
        int32_t fl = flags[rpick(r, 7)];
        int64_t topk = rpick(r, 2) ? 0 : ri64(r);
        st = CALL(kd_select_pseudo_labels(n, c, rpick(r, 16) ? x : NULL, ld, fl, (float)rf64(r),
                                          rpick(r, 3) ? NULL : ct, topk, rpick(r, 2) ? o1 : NULL,
                                          rpick(r, 2) ? o2 : NULL, rpick(r, 2) ? o3 : NULL,
                                          rpick(r, 2) ? o5 : NULL, err, err_size));
        break;
    }
    case 1:
        call = "kd_label_quality";
        st =
            CALL(kd_label_quality(n, c, rpick(r, 16) ? x : NULL, ld, rpick(r, 16) ? labels : NULL,
                                  ig, (int32_t)(ri64(r) % 4), rpick(r, 2) ? o1 : NULL,
                                  rpick(r, 2) ? o4 : NULL, rpick(r, 2) ? o5 : NULL, err, err_size));
        break;
    case 2:
        call = "kd_find_label_issues";
        st = CALL(kd_find_label_issues(n, c, rpick(r, 16) ? x : NULL, ld,
                                       rpick(r, 16) ? labels : NULL, ig, rpick(r, 2) ? ct : NULL,
                                       rpick(r, 2) ? o2 : NULL, rpick(r, 2) ? o6 : NULL,
                                       rpick(r, 2) ? o5 : NULL, err, err_size));
        break;
    case 3:
    case 4: {
        call = "kd_soft_labels";
        int64_t ldo = ld;
        float *out = alloc_floats(&A, r, me, 0);
        if (!out)
            goto out;
        int inplace = rpick(r, 4) == 0;
        int32_t *pred = rpick(r, 2) ? NULL : labels;
        aclear_outputs(&A);
        amark_output(&A, err);
        amark_output(&A, inplace ? x : out);
        asnapshot(&A);
        st = CALL(kd_soft_labels(n, c, rpick(r, 16) ? labels : NULL, ig, (float)rf64(r),
                                 (int32_t)(ri64(r) % 3), rpick(r, 8) ? x : NULL, ld, pred,
                                 inplace ? x : (rpick(r, 16) ? out : NULL), ldo, err, err_size));
        break;
    }
    default: {
        call = "kd_ensemble_average";
        int32_t k = 1 + (int32_t)rpick(r, 3);
        if (rpick(r, 16) == 0)
            k = (int32_t)(ri64(r) % 2) - 1; /* 0 or -1... or -2 */
        int32_t real = k >= 1 ? k : 1;
        const float **in = aalloc(&A, (size_t)real * sizeof(float *));
        int64_t *lds = aalloc(&A, (size_t)real * 8);
        float *w = rpick(r, 2) ? alloc_floats(&A, r, (size_t)real, 1) : NULL;
        float *out = alloc_floats(&A, r, me, 0);
        if (!in || !lds || !out)
            goto out;
        for (int32_t q = 0; q < real; q++) {
            in[q] = q == 0 ? x : alloc_floats(&A, r, me, probs);
            lds[q] = ld;
            if (!in[q])
                goto out;
        }
        if (rpick(r, 16) == 0)
            in[rpick(r, (unsigned)real)] = NULL;
        int inplace = rpick(r, 4) == 0;
        aclear_outputs(&A);
        amark_output(&A, err);
        amark_output(&A, inplace ? x : out);
        asnapshot(&A);
        st = CALL(kd_ensemble_average(n, c, k, rpick(r, 16) ? in : NULL, lds, w, inplace ? x : out,
                                      ld, err, err_size));
    }
    }
    askip(&A, err);
    acheck(&A, call, st);
    if (err)
        check_err(err, err_size, call, st);
out:
    afree(&A);
}

/* ---- cleanlab-compatible confident learning, selective soft labels ------- */

/* Reached from the label area with bit 2 of the area byte (the seed corpus
 * of fuzz_labels has it clear).  One call per input, with real buffers of
 * exactly the claimed sizes: n x ld probabilities (up to MAXR rows), n
 * labels and masks, c and c x c outputs for c <= CL_CMAX; a larger c is
 * brought down to CL_CMAX unless it is one no allocator can serve (>= 65536:
 * c x c workspace beyond 1 GiB), where the c-sized buffers are dummies and n
 * is 0, so that the documented KD_ERR_OUT_OF_MEMORY (or KD_ERR_SHAPE) comes
 * before any access.  On success the results are checked against the
 * invariants labels.h documents, and against each other (find_label_issues
 * against the scores, num_label_issues and the confident joint it is built
 * from; the selective soft labels against the formula and kd_soft_labels). */

#define CL_CMAX 48
#define CL_BIGC 65536
#define CL_PAT 0x5555555555555555LL /* an int64 output entry never written */

/* p when the allocation holding p has room for `bytes` from p (so that an
 * aliased output is still a real buffer of its claimed size), else NULL. */
static void *aroom(arena *A, void *p, size_t bytes)
{
    alloc_t *a = p ? afind(A, p) : NULL;
    if (!a || (size_t)((char *)p - (char *)a->p) + bytes > a->size)
        return NULL;
    return p;
}

/* Point *out at cand when the room allows; 1 when it did. */
static int alias_to(arena *A, void **out, void *cand, size_t bytes)
{
    void *p = aroom(A, cand, bytes);
    if (!p || !bytes)
        return 0;
    *out = p;
    return 1;
}

/* An output over the labels or the probabilities (both non-empty when n > 0):
 * 1 when an overlap the call must refuse was set up. */
static int alias_input(arena *A, void **out, int to_labels, const int32_t *labels, const float *x,
                       size_t bytes, size_t nb)
{
    return alias_to(A, out, to_labels ? (void *)(uintptr_t)labels : (void *)(uintptr_t)x, bytes) &&
           nb;
}

typedef struct {
    int64_t n, c, ld;
    int32_t ig;
    const float *x; /* the probabilities as they were before the call */
    const int32_t *labels;
    int64_t counts[CL_CMAX], labelled;
} cl_ctx;

static void cl_counts(cl_ctx *K)
{
    K->labelled = 0;
    for (int64_t k = 0; k < K->c && k < CL_CMAX; k++)
        K->counts[k] = 0;
    for (int64_t i = 0; i < K->n; i++)
        if (K->labels[i] != K->ig) {
            K->counts[K->labels[i]]++;
            K->labelled++;
        }
}

/* Entries of a c x c matrix in [0, 1], every column summing to 1 (or, for a
 * class no row ends up in, all zero). */
static void cl_check_columns(const cl_ctx *K, const double *m, const char *call, const char *what)
{
    const int64_t c = K->c;
    for (int64_t j = 0; j < c; j++) {
        double s = 0.0;
        int zero = 1;
        for (int64_t i = 0; i < c; i++) {
            const double v = m[i * c + j];
            if (!(v >= 0.0 && v <= 1.0))
                fail("%s: %s[%lld][%lld] = %g outside [0, 1]", call, what, (long long)i,
                     (long long)j, v);
            s += v;
            zero &= v == 0.0;
        }
        if (!zero && fabs(s - 1.0) > 1e-4)
            fail("%s: column %lld of %s sums to %.9g", call, (long long)j, what, s);
    }
}

/* A calibrated joint: entries >= 0, row y summing to the rows labelled y. */
static void cl_check_calibrated(const cl_ctx *K, const int64_t *cj, const char *call)
{
    for (int64_t i = 0; i < K->c; i++) {
        int64_t s = 0;
        for (int64_t j = 0; j < K->c; j++) {
            if (cj[i * K->c + j] < 0)
                fail("%s: calibrated joint[%lld][%lld] = %lld < 0", call, (long long)i,
                     (long long)j, (long long)cj[i * K->c + j]);
            s += cj[i * K->c + j];
        }
        if (s != K->counts[i])
            fail("%s: calibrated joint row %lld sums to %lld, %lld rows have that label", call,
                 (long long)i, (long long)s, (long long)K->counts[i]);
    }
}

/* The scores rank.get_label_quality_scores gives (a second call, checked). */
static double *cl_scores(arena *A, const cl_ctx *K, int32_t method, int32_t adjust)
{
    double *s = aalloc(A, (size_t)K->n * 8);
    if (!s)
        return NULL;
    kd_status st = CALL(kd_cleanlab_get_label_quality_scores(K->n, K->c, K->x, K->ld, K->labels,
                                                             K->ig, method, adjust, s, NULL, 0));
    if (st != KD_OK)
        fail("kd_cleanlab_get_label_quality_scores(%d, %d) failed (%d) on inputs "
             "kd_cleanlab_find_label_issues accepted",
             (int)method, (int)adjust, (int)st);
    return s;
}

/* (score, row) before (score', row'): ascending, NaN last, ties by row. */
static int cl_before(double a, int64_t ra, double b, int64_t rb)
{
    if (isnan(a) != isnan(b))
        return isnan(b);
    if (!isnan(a) && a != b)
        return a < b;
    return ra < rb;
}

static void cl_check_issues(arena *A, const cl_ctx *K, int32_t filter_by, int32_t rank_by,
                            int32_t adjust, const uint8_t *iss, const int64_t *rk,
                            const int64_t *num)
{
    static const char call[] = "kd_cleanlab_find_label_issues";
    const int64_t n = K->n;
    int64_t count = -1;
    if (iss) {
        count = 0;
        for (int64_t i = 0; i < n; i++) {
            if (iss[i] > 1 || (iss[i] && K->labels[i] == K->ig))
                fail("%s: issues[%lld] = %d (label %d)", call, (long long)i, (int)iss[i],
                     (int)K->labels[i]);
            count += iss[i];
        }
    }
    if (num) {
        if (*num < 0 || *num > K->labelled || (count >= 0 && *num != count))
            fail("%s: num_issues = %lld (%lld in the mask, %lld labelled rows)", call,
                 (long long)*num, (long long)count, (long long)K->labelled);
        count = *num;
    }
    double *sc = NULL;
    if (rk) {
        int64_t m = 0;
        while (m < n && rk[m] != CL_PAT)
            m++;
        for (int64_t q = m; q < n; q++)
            if (rk[q] != CL_PAT)
                fail("%s: ranked[%lld] written past the %lld issues", call, (long long)q,
                     (long long)m);
        if (count >= 0 && m != count)
            fail("%s: %lld ranked entries for %lld issues", call, (long long)m, (long long)count);
        if (rank_by != KD_CLEANLAB_RANK_NONE)
            sc = cl_scores(A, K, rank_by, adjust);
        uint8_t seen[MAXR] = {0};
        for (int64_t q = 0; q < m; q++) {
            const int64_t i = rk[q];
            if (i < 0 || i >= n || seen[i] || K->labels[i] == K->ig || (iss && !iss[i]))
                fail("%s: ranked[%lld] = %lld is not a new issue row", call, (long long)q,
                     (long long)i);
            seen[i] = 1;
            if (q > 0 && sc && !cl_before(sc[rk[q - 1]], rk[q - 1], sc[i], i))
                fail("%s: ranked[%lld] = %lld (score %.17g) after row %lld (score %.17g)", call,
                     (long long)q, (long long)i, sc[i], (long long)rk[q - 1], sc[rk[q - 1]]);
            if (q > 0 && !sc && rk[q - 1] >= i)
                fail("%s: ranked in row order but %lld after %lld", call, (long long)i,
                     (long long)rk[q - 1]);
        }
    }
    if (!iss)
        return;
    if (filter_by == KD_CLEANLAB_LOW_NORMALIZED_MARGIN ||
        filter_by == KD_CLEANLAB_LOW_SELF_CONFIDENCE) {
        /* the num_label_issues rows of lowest score */
        int64_t want = -1;
        if (CALL(kd_cleanlab_num_label_issues(n, K->c, K->x, K->ld, K->labels, K->ig,
                                              KD_CLEANLAB_OFF_DIAGONAL, NULL, &want, NULL, 0)))
            fail("kd_cleanlab_num_label_issues failed where find_label_issues did not");
        if (count != (want < K->labelled ? want : K->labelled))
            fail("%s(filter %d): %lld issues, num_label_issues %lld", call, (int)filter_by,
                 (long long)count, (long long)want);
        const double *s = cl_scores(A, K,
                                    filter_by == KD_CLEANLAB_LOW_SELF_CONFIDENCE
                                        ? KD_LABEL_SCORE_SELF_CONFIDENCE
                                        : KD_LABEL_SCORE_NORMALIZED_MARGIN,
                                    0);
        for (int64_t i = 0; s && i < n; i++)
            for (int64_t j = 0; j < n; j++)
                if (iss[i] && !iss[j] && K->labels[j] != K->ig && cl_before(s[j], j, s[i], i))
                    fail("%s(filter %d): row %lld (%.17g) is an issue, row %lld (%.17g) not", call,
                         (int)filter_by, (long long)i, s[i], (long long)j, s[j]);
        return;
    }
    if (filter_by == KD_CLEANLAB_CONFIDENT_LEARNING) {
        uint8_t *od = aalloc(A, n > 0 ? (size_t)n : 1);
        int64_t *cj = aalloc(A, (size_t)(K->c * K->c) * 8);
        if (!od || !cj)
            return;
        if (CALL(kd_cleanlab_confident_joint(n, K->c, K->x, K->ld, K->labels, K->ig, 0, cj,
                                             n > 0 ? od : NULL, NULL, NULL, 0)))
            fail("kd_cleanlab_confident_joint failed where find_label_issues did not");
        for (int64_t i = 0; i < n; i++)
            if (iss[i] && !od[i])
                fail("%s(confident_learning): row %lld is an issue but not off-diagonal", call,
                     (long long)i);
    }
    for (int64_t i = 0; i < n; i++) {
        if (!iss[i])
            continue;
        /* _reduce_issues: never a row whose label is its argmax once p_iy is
         * raised by 1e-6 (lowest index on ties) */
        const float *p = K->x + i * K->ld;
        const int32_t y = K->labels[i];
        const double py = (double)p[y] + 1e-6;
        int near = 1;
        for (int64_t j = 0; j < K->c; j++)
            if (j != y && (j < y ? (double)p[j] >= py : (double)p[j] > py))
                near = 0;
        if (near)
            fail("%s(filter %d): row %lld is an issue with its label %d (near) the argmax", call,
                 (int)filter_by, (long long)i, (int)y);
    }
}

static void cl_check_soft(const cl_ctx *K, int32_t mode, int32_t flags, float lw,
                          const uint8_t *susp, const float *out, int64_t ldo)
{
    static const char call[] = "kd_soft_labels_selective";
    for (int64_t i = 0; i < K->n; i++) {
        const float *p = K->x + i * K->ld, *q = out + i * ldo;
        const int32_t y = K->labels[i];
        int64_t best = 0;
        double sp = 0.0, sq = 0.0;
        for (int64_t j = 0; j < K->c; j++) {
            if (p[j] > p[best])
                best = j;
            sp += p[j];
        }
        double w = lw;
        if (y == K->ig)
            w = 0.0;
        else if ((flags & KD_SOFT_LABEL_SUSPECTS_ONLY) && !susp[i])
            w = 1.0;
        else if (flags & KD_SOFT_LABEL_CONFIDENCE_WEIGHT)
            w = lw + (1.0 - lw) * p[y];
        for (int64_t j = 0; j < K->c; j++) {
            const double xj = mode == KD_SOFT_LABEL_ONEHOT ? (double)(j == best) : (double)p[j];
            const double want = w * (j == y) + (1.0 - w) * xj;
            if (!(q[j] >= 0.0f && q[j] <= 1.0f + 1e-6f) || fabs(q[j] - want) > 1e-6)
                fail("%s: q[%lld][%lld] = %.9g, the formula gives %.9g", call, (long long)i,
                     (long long)j, (double)q[j], want);
            if ((w == 1.0 || w == 0.0) && q[j] != (float)want)
                fail("%s: q[%lld][%lld] = %.9g not exactly %.9g (weight %g)", call, (long long)i,
                     (long long)j, (double)q[j], want, w);
            sq += q[j];
        }
        const double drift = mode == KD_SOFT_LABEL_ONEHOT ? 0.0 : fabs(sp - 1.0);
        if (fabs(sq - 1.0) > drift + 1e-5 * (double)K->c)
            fail("%s: row %lld sums to %.9g (probabilities: %.9g)", call, (long long)i, sq, sp);
    }
}

static void fuzz_cleanlab(rd *r)
{
    arena A = {.n = 0};
    int64_t n = rpick(r, 4) == 0 ? rpick(r, MAXR + 1) : rpick(r, 10);
    int64_t c = 1 + rpick(r, rpick(r, 4) == 0 ? CL_CMAX : 5);
    const unsigned shape = rpick(r, 16);
    if (shape == 1)
        c = rpick(r, 2) ? 0 : ri64(r);
    if (c > CL_CMAX && c < CL_BIGC)
        c = 1 + c % CL_CMAX; /* the c x c outputs must be real */
    int64_t ld = c < INT64_MAX - 2 ? c + (rpick(r, 4) == 0 ? rpick(r, 3) : 0) : c;
    if (shape == 0)
        n = -1 - rpick(r, 2);
    else if (shape == 2)
        ld = c > INT64_MIN + 2 ? c - 1 - rpick(r, 2) : c;
    else if (shape == 3 && c >= 1 && c <= CL_CMAX) { /* overflowing extent: dummies */
        n = rpick(r, 2) ? INT64_MAX : (int64_t)1 << 62;
        ld = rpick(r, 2) ? overflowing_ld(n, c) : ((int64_t)1 << 40);
    }
    const int cvalid = c >= 1 && c <= INT32_MAX, bigc = c >= CL_BIGC || c < 1;
    int64_t e = c >= 1 ? extent(n, c, ld) : n > 0 ? -1 : 0;
    if (e < 0 && !(n < 0 || !cvalid || ld < c || (n >= 2 && ld > (INT64_MAX - c) / (n - 1))))
        n = 0, e = 0;
    const int honest = e >= 0;
    const size_t me = honest ? (size_t)e : 1, vn = honest && n > 0 ? (size_t)n : 1;
    const size_t cn = bigc ? 1 : (size_t)c, ccn = cn * cn;
    const int realc = !bigc || !cvalid; /* a c-sized input may be read before the call fails */

    float *x = alloc_floats(&A, r, me, rpick(r, 8) != 0);
    if (x && honest && n > 0 && rpick(r, 2)) /* rows summing to 1, mostly */
        for (int64_t i = 0; i < n; i++) {
            double s = 0.0;
            for (int64_t j = 0; j < c; j++)
                s += x[i * ld + j];
            if (s > 0.0 && isfinite(s))
                for (int64_t j = 0; j < c; j++)
                    x[i * ld + j] = (float)(x[i * ld + j] / s);
        }
    const int32_t ig = rpick(r, 4) ? KD_LABELS_DEFAULT_IGNORE_INDEX : (int32_t)ri64(r);
    int32_t *labels = aalloc(&A, vn * 4);
    for (size_t i = 0; labels && i < vn; i++) {
        const uint8_t b = r8(r);
        labels[i] = b < 232   ? (int32_t)(b % cn)
                    : b < 244 ? ig
                    : b < 250 ? (int32_t)cn
                              : (int32_t)ri64(r);
    }
    static const size_t esz[] = {0, 1, 2, 16, 256};
    size_t err_size = esz[rpick(r, 5)];
    char *err = rpick(r, 8) ? aalloc(&A, err_size) : NULL;
    if (err)
        memset(err, 'x', err_size);
    else
        err_size = rpick(r, 2) ? 0 : 64;
    double *thr = aalloc(&A, cn * 8), *jt = aalloc(&A, ccn * 8), *py = aalloc(&A, cn * 8);
    double *nm = aalloc(&A, ccn * 8), *inv = aalloc(&A, ccn * 8), *sc = aalloc(&A, vn * 8);
    int64_t *cj = aalloc(&A, ccn * 8), *cjin = aalloc(&A, ccn * 8), *num = aalloc(&A, 8);
    int64_t *rk = aalloc(&A, vn * 8), *ntr = aalloc(&A, cn * 8);
    uint8_t *od = aalloc(&A, vn), *iss = aalloc(&A, vn), *susp = aalloc(&A, vn);
    if (!x || !labels || !thr || !jt || !py || !nm || !inv || !sc || !cj || !cjin || !num || !rk ||
        !ntr || !od || !iss || !susp)
        goto out;
    memset(thr, 0x55, cn * 8), memset(jt, 0x55, ccn * 8), memset(py, 0x55, cn * 8);
    memset(nm, 0x55, ccn * 8), memset(inv, 0x55, ccn * 8), memset(sc, 0x55, vn * 8);
    memset(cj, 0x55, ccn * 8), memset(num, 0x55, 8), memset(rk, 0x55, vn * 8);
    memset(od, 0x55, vn), memset(iss, 0x55, vn);
    for (size_t k = 0; k < ccn; k++)
        cjin[k] = r8(r) < 240 ? (int64_t)rpick(r, 12) : ri64(r);
    for (size_t k = 0; k < cn; k++) { /* 2^44..2^55: prune counts past 2^53 */
        const uint8_t b = r8(r);
        ntr[k] = b < 232   ? (int64_t)rpick(r, 4)
                 : b < 244 ? ((int64_t)1 << (44 + rpick(r, 12))) + (int64_t)r32(r)
                           : ri64(r);
    }
    for (size_t k = 0; k < vn; k++) {
        const uint8_t b = r8(r);
        susp[k] = b < 250 ? (uint8_t)(b & 1) : b;
    }
    cl_ctx K = {.n = n, .c = c, .ld = ld, .ig = ig, .x = x, .labels = labels};
    const float *P = rpick(r, 16) ? x : NULL;
    const int32_t *L = rpick(r, 16) ? labels : NULL;
    const unsigned which = rpick(r, 9);
    const unsigned alias = rpick(r, 12); /* 0-2: an output over an input or another output */
    const size_t nb = n > 0 && honest ? (size_t)n : 0, cb = cvalid && !bigc ? (size_t)c : 0;
    int aliased = 0; /* an overlap of two non-empty ranges was set up */
    float *soft = NULL, *sx = x;
    int64_t ldo = ld;
    int32_t mode = 0, flags = 0, fb = 0, rank_by = -1, adjust = 0;
    float lw = 0.7f;
    aclear_outputs(&A);
    amark_output(&A, err), amark_output(&A, thr), amark_output(&A, jt), amark_output(&A, py);
    amark_output(&A, nm), amark_output(&A, inv), amark_output(&A, sc), amark_output(&A, cj);
    amark_output(&A, num), amark_output(&A, rk), amark_output(&A, od), amark_output(&A, iss);
    const char *call = "?";
    kd_status st;
    switch (which) {
    case 0: {
        call = "kd_cleanlab_confident_thresholds";
        double *T = rpick(r, 16) ? thr : NULL;
        if (T && alias < 2)
            aliased = alias_input(&A, (void **)&T, alias, labels, x, cb * 8, nb);
        asnapshot(&A);
        st = CALL(kd_cleanlab_confident_thresholds(n, c, P, ld, L, ig, T, err, err_size));
        if (st == KD_OK && T == thr) {
            cl_counts(&K);
            for (int64_t k = 0; k < c; k++)
                if (!(thr[k] >= 2e-6 && thr[k] <= (K.counts[k] ? 1.0 : 2.0)) ||
                    (K.counts[k] == 0) != (thr[k] == 2.0))
                    fail("%s: threshold %lld = %.17g with %lld rows labelled so", call,
                         (long long)k, thr[k], (long long)K.counts[k]);
        }
        break;
    }
    case 1: {
        static const int32_t fl[] = {0, 1, 1, 0, 2, 3, -1, 5};
        call = "kd_cleanlab_confident_joint";
        flags = fl[rpick(r, 8)];
        int64_t *CJ = rpick(r, 16) ? cj : NULL, *NO = rpick(r, 2) ? num : NULL;
        uint8_t *OD = rpick(r, 2) ? od : NULL;
        if (alias == 0 && CJ)
            aliased = alias_input(&A, (void **)&CJ, rpick(r, 2), labels, x, cb * cb * 8, nb);
        else if (alias == 1 && OD)
            aliased = alias_to(&A, (void **)&OD, labels, nb) && nb;
        else if (alias == 2 && NO && CJ)
            aliased = alias_to(&A, (void **)&NO, CJ, 8) && cb;
        asnapshot(&A);
        st =
            CALL(kd_cleanlab_confident_joint(n, c, P, ld, L, ig, flags, CJ, OD, NO, err, err_size));
        if (st != KD_OK || CJ != cj)
            break;
        cl_counts(&K);
        int64_t off = 0, offsum = 0;
        for (int64_t i = 0; OD == od && i < n; i++) {
            if (od[i] > 1 || (od[i] && labels[i] == ig))
                fail("%s: off_diagonal[%lld] = %d", call, (long long)i, (int)od[i]);
            off += od[i];
        }
        if (NO == num && (*num < 0 || *num > K.labelled || (OD == od && *num != off)))
            fail("%s: num_off_diagonal %lld (mask %lld)", call, (long long)*num, (long long)off);
        if (flags & KD_CLEANLAB_CALIBRATE) {
            cl_check_calibrated(&K, cj, call);
            break;
        }
        for (int64_t i = 0; i < c; i++) {
            int64_t rs = 0;
            for (int64_t j = 0; j < c; j++) {
                const int64_t v = cj[i * c + j];
                if (v < (i == j) || (i != j && v > K.counts[i]))
                    fail("%s: joint[%lld][%lld] = %lld", call, (long long)i, (long long)j,
                         (long long)v);
                rs += v;
                if (i != j)
                    offsum += v;
            }
            if (rs > K.counts[i] + 1)
                fail("%s: joint row %lld sums to %lld > %lld + 1", call, (long long)i,
                     (long long)rs, (long long)K.counts[i]);
        }
        if (NO == num && offsum != *num)
            fail("%s: off-diagonal entries sum to %lld, num_off_diagonal %lld", call,
                 (long long)offsum, (long long)*num);
        break;
    }
    case 2: {
        call = "kd_cleanlab_estimate_joint";
        const int64_t *CJI = rpick(r, 3) == 0 && realc ? cjin : NULL;
        double *J = rpick(r, 16) ? jt : NULL;
        if (J && alias < 2)
            aliased = alias_input(&A, (void **)&J, alias, labels, x, cb * cb * 8, nb);
        else if (J && alias == 2 && CJI)
            aliased = alias_to(&A, (void **)&J, (void *)(uintptr_t)CJI, cb * cb * 8);
        asnapshot(&A);
        st = CALL(kd_cleanlab_estimate_joint(n, c, P, ld, L, ig, CJI, J, err, err_size));
        if (st != KD_OK || J != jt || CJI)
            break;
        cl_counts(&K);
        double s = 0.0;
        for (int64_t k = 0; k < c * c; k++) {
            if (!(jt[k] >= 0.0 && jt[k] <= 1.0))
                fail("%s: joint entry %lld = %g", call, (long long)k, jt[k]);
            s += jt[k];
        }
        if (K.labelled ? fabs(s - 1.0) > 1e-9 : s != 0.0)
            fail("%s: joint sums to %.17g (%lld labelled rows)", call, s, (long long)K.labelled);
        break;
    }
    case 3: {
        static const int32_t fl[] = {3, 3, 0, 1, 2, 4, -1, 7};
        call = "kd_cleanlab_estimate_py_and_noise_matrices";
        flags = fl[rpick(r, 8)];
        double *PY = rpick(r, 4) ? py : NULL, *NM = rpick(r, 4) ? nm : NULL;
        double *INV = rpick(r, 4) ? inv : NULL;
        int64_t *CJ = rpick(r, 2) ? cj : NULL;
        if (alias == 0 && PY)
            aliased = alias_input(&A, (void **)&PY, rpick(r, 2), labels, x, cb * 8, nb);
        else if (alias == 1 && NM && INV)
            aliased = alias_to(&A, (void **)&NM, INV, cb * cb * 8) && cb;
        else if (alias == 2 && CJ && NM)
            aliased = alias_to(&A, (void **)&CJ, NM, cb * cb * 8) && cb;
        asnapshot(&A);
        st = CALL(kd_cleanlab_estimate_py_and_noise_matrices(n, c, P, ld, L, ig, flags, PY, NM, INV,
                                                             CJ, err, err_size));
        if (st != KD_OK || aliased)
            break;
        cl_counts(&K);
        if (PY == py) {
            double s = 0.0;
            for (int64_t k = 0; k < c; k++) {
                if (!(py[k] > 0.0 && py[k] <= 1.0))
                    fail("%s: py[%lld] = %g", call, (long long)k, py[k]);
                s += py[k];
            }
            if (fabs(s - 1.0) > 1e-9)
                fail("%s: py sums to %.17g", call, s);
        }
        if (NM == nm)
            cl_check_columns(&K, nm, call, "noise_matrix");
        if (INV == inv)
            cl_check_columns(&K, inv, call, "inv_noise_matrix");
        if (CJ == cj && (flags & KD_CLEANLAB_CALIBRATE))
            cl_check_calibrated(&K, cj, call);
        break;
    }
    case 4: {
        static const int32_t me4[] = {0, 0, 1, 2, 2, 3, -1, INT32_MIN};
        call = "kd_cleanlab_num_label_issues";
        const int32_t method = me4[rpick(r, 8)];
        const int64_t *CJI =
            realc && (method == KD_CLEANLAB_OFF_DIAGONAL_CUSTOM ? rpick(r, 8) : !rpick(r, 8))
                ? cjin
                : NULL;
        int64_t *NUM = rpick(r, 16) ? num : NULL;
        if (NUM && alias < 2)
            aliased = alias_input(&A, (void **)&NUM, alias, labels, x, 8, nb);
        else if (NUM && alias == 2 && CJI)
            aliased = alias_to(&A, (void **)&NUM, (void *)(uintptr_t)CJI, 8);
        asnapshot(&A);
        st =
            CALL(kd_cleanlab_num_label_issues(n, c, P, ld, L, ig, method, CJI, NUM, err, err_size));
        if (st != KD_OK || NUM != num || method == KD_CLEANLAB_OFF_DIAGONAL_CUSTOM)
            break;
        cl_counts(&K);
        if (*num < 0 || *num > K.labelled)
            fail("%s(%d): %lld issues of %lld labelled rows", call, (int)method, (long long)*num,
                 (long long)K.labelled);
        break;
    }
    case 5:
    case 6: {
        static const int32_t fbs[] = {0, 1, 2, 3, 4, 5, 6, 0, 1, 2, 3, 4, 5, 6, -1, 7};
        static const int32_t rbs[] = {-1, -1, 0, 1, 3, 0, 1, 3, 2, -2, 4, INT32_MAX};
        static const int64_t mins[] = {1, 1, 0, 2, 3, 5, 1000, -1, INT64_MAX, INT64_MIN};
        static const double fracs[] = {1.0, 1.0, 0.5, 0.7, 0.0};
        call = "kd_cleanlab_find_label_issues";
        fb = rpick(r, 32) ? fbs[rpick(r, 16)] : (int32_t)ri64(r);
        const double frac = rpick(r, 8) ? fracs[rpick(r, 5)] : rf64(r);
        const int64_t *NTR = rpick(r, 4) == 0 && realc ? ntr : NULL;
        const int64_t mine = mins[rpick(r, 10)];
        rank_by = rbs[rpick(r, 12)];
        adjust = rpick(r, 3) ? 0 : (int32_t)rpick(r, 3);
        uint8_t *ISS = rpick(r, 4) ? iss : NULL;
        int64_t *RK = rpick(r, 2) ? rk : NULL, *NUM = rpick(r, 2) ? num : NULL;
        if (alias == 0 && RK)
            aliased = alias_input(&A, (void **)&RK, rpick(r, 2), labels, x, nb * 8, nb);
        else if (alias == 1 && ISS)
            aliased = rpick(r, 2) || !NTR
                          ? alias_to(&A, (void **)&ISS, labels, nb) && nb
                          : alias_to(&A, (void **)&ISS, (void *)(uintptr_t)NTR, nb) && nb && cb;
        else if (alias == 2 && NUM && (RK || ISS))
            aliased = RK ? alias_to(&A, (void **)&NUM, RK, 8) && nb
                         : alias_to(&A, (void **)&NUM, ISS, 8) && nb >= 8;
        asnapshot(&A);
        st = CALL(kd_cleanlab_find_label_issues(n, c, P, ld, L, ig, fb, frac, NTR, mine, rank_by,
                                                adjust, ISS, RK, NUM, err, err_size));
        if (st == KD_OK && !aliased && P && L) {
            cl_counts(&K);
            cl_check_issues(&A, &K, fb, rank_by, adjust, ISS, RK, NUM);
        }
        break;
    }
    case 7: {
        static const int32_t ms[] = {0, 1, 3, 0, 1, 3, 0, 1, 2, -1};
        call = "kd_cleanlab_get_label_quality_scores";
        const int32_t method = ms[rpick(r, 10)];
        adjust = rpick(r, 3) ? 0 : rpick(r, 8) ? 1 : (int32_t)ri64(r);
        double *SC = rpick(r, 16) ? sc : NULL;
        if (SC && alias < 2)
            aliased = alias_input(&A, (void **)&SC, alias, labels, x, nb * 8, nb);
        asnapshot(&A);
        st = CALL(kd_cleanlab_get_label_quality_scores(n, c, P, ld, L, ig, method, adjust, SC, err,
                                                       err_size));
        if (st != KD_OK || SC != sc)
            break;
        for (int64_t i = 0; i < n; i++) {
            if (labels[i] == ig) {
                if (!isnan(sc[i]))
                    fail("%s: ignored row %lld scored %g", call, (long long)i, sc[i]);
                continue;
            }
            if (sc[i] >= 0.0 && sc[i] <= 1.0)
                continue;
            /* adjust_pred_probs over a row of zeros (every p_ij - t_j + max t = 0):
             * 0 / 0, as in cleanlab */
            int zero = adjust && isnan(sc[i]);
            for (int64_t j = 0; zero && j < c; j++)
                zero = x[i * ld + j] <= 1e-15f;
            if (!zero)
                fail("%s(%d, adjust %d): row %lld scored %.17g", call, (int)method, (int)adjust,
                     (long long)i, sc[i]);
        }
        break;
    }
    default: {
        static const int32_t ms[] = {0, 1, 0, 1, 2, -1};
        static const int32_t fl[] = {0, 1, 2, 3, 1, 3, 4, -1};
        call = "kd_soft_labels_selective";
        mode = ms[rpick(r, 6)];
        flags = fl[rpick(r, 8)];
        lw = rpick(r, 4) ? 0.7f : (float)rf64(r);
        const uint8_t *SU = (flags & KD_SOFT_LABEL_SUSPECTS_ONLY) ? (rpick(r, 16) ? susp : NULL)
                                                                  : (rpick(r, 16) ? NULL : susp);
        const unsigned place = rpick(r, 4); /* 0: in place over the probabilities */
        int soft_real = 1;
        if (place != 0) {
            ldo = ld < INT64_MAX - 2 ? ld + (rpick(r, 3) == 0 ? 1 : 0) : ld;
            if (rpick(r, 16) == 0)
                ldo = c - 1;
            const int64_t eo = c >= 1 ? extent(n, c, ldo) : n > 0 ? -1 : 0;
            /* a shape that cannot be allocated is refused: a dummy */
            soft_real = honest && eo >= 0;
            soft = alloc_floats(&A, r, soft_real ? (size_t)eo : 1, 0);
            if (!soft)
                goto out;
        } else {
            soft = x;
        }
        const int32_t *LL = L;
        if (alias == 0 && place == 0 && nb && ld > c) {
            ldo = ld - 1; /* over probs, but not exactly it */
            aliased = 1;
        } else if (alias == 1 && place != 0 && soft_real && SU && nb) {
            SU = (const uint8_t *)soft; /* an input inside the output */
            memset(soft, 0, (size_t)n);
            aliased = 1;
        } else if (alias == 2 && place != 0 && soft_real && LL && nb) {
            memcpy(soft, labels, (size_t)n * 4);
            LL = (const int32_t *)soft;
            aliased = 1;
        }
        aclear_outputs(&A);
        amark_output(&A, err), amark_output(&A, soft);
        asnapshot(&A);
        sx = afind(&A, x)->snap;
        st = CALL(kd_soft_labels_selective(n, c, LL, ig, lw, mode, flags, P, ld, SU,
                                           rpick(r, 16) ? soft : NULL, ldo, err, err_size));
        if (st != KD_OK || aliased || !P || !L)
            break;
        K.x = sx;
        cl_check_soft(&K, mode, flags, lw, SU, soft, ldo);
        if (flags == 0 && place != 0 && n > 0) { /* kd_soft_labels without predictions */
            float *o2 = aalloc(&A, (size_t)((n - 1) * ldo + c) * 4);
            if (o2 && CALL(kd_soft_labels(n, c, labels, ig, lw, mode, x, ld, NULL, o2, ldo, NULL,
                                          0)) != KD_OK)
                fail("kd_soft_labels refused what kd_soft_labels_selective took");
            for (int64_t i = 0; o2 && i < n; i++)
                if (memcmp(o2 + i * ldo, soft + i * ldo, (size_t)c * 4))
                    fail("%s(flags 0) row %lld differs from kd_soft_labels", call, (long long)i);
        }
    }
    }
    if (aliased && st == KD_OK)
        fail("%s accepted an output overlapping another buffer", call);
    askip(&A, err);
    acheck(&A, call, st);
    if (err)
        check_err(err, err_size, call, st);
out:
    afree(&A);
}

/* ---- entry points --------------------------------------------------------- */

static void cleanup(void)
{
    char cmd[400];
    if (g_dir[0]) {
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_dir);
        if (system(cmd) != 0)
            fprintf(stderr, "fuzz_api: could not remove %s\n", g_dir);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    struct stat sb;
    const char *base = stat("/dev/shm", &sb) == 0 && S_ISDIR(sb.st_mode) ? "/dev/shm" : "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/kdfuzz-XXXXXX", base);
    if (!mkdtemp(g_dir)) {
        perror("mkdtemp");
        abort();
    }
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    rd r = {data, size, 0};
    (void)kd_status_string((kd_status)r32(&r));
    r.i = 0;
    switch (r8(&r) & 3) {
    case 0:
        fuzz_loss(&r);
        break;
    case 1:
        fuzz_ema(&r);
        break;
    case 2:
        if (r.n > 0 && (r.d[0] & 4)) /* bit 2 of the area byte: the family */
            fuzz_threshold(&r);
        else
            fuzz_flexmatch(&r);
        break;
    default:
        if (r.n > 0 && (r.d[0] & 4)) /* bit 2 of the area byte: cleanlab, selective */
            fuzz_cleanlab(&r);
        else
            fuzz_labels(&r);
    }
    return 0;
}
