/* Part 3 of the SIMD kernel template (see simd_impl.h): the long-row
 * kernels kl_row_, ce_row_ and mse_row_ and their shared gradient pass
 * (KDV_SEG_PASS).  Needs simd_math.h and simd_pipe.h. */

/* The gradient passes of the row kernels share one loop (KDV_SEG_PASS):
 * a step function STEP(ctx, tl, j, valid, acc) evaluates the vector at j,
 * loading each input p through KDV_AT(p): a plain load at p + j, or the
 * row's tail when tl is not NULL (see vtail).  The tail is evaluated before
 * the main loop and stored after it, so g may equal the student. */
#define KDV_AT(p) (tl ? tload((p), tl, 0.0f) : vload((p) + j))

/* NAME_seg_(ctx, j0, j1, last, out): the gradient pass over [j0, j1) of a
 * row (last: the segment holding the row's tail), out = the two sums of
 * acc.  CTX has the fields g (gradient or NULL) and c (row length). */
#define KDV_SEG_PASS(NAME, CTX, STEP)                                                              \
    static inline void KDV_FN(NAME)(const void *ctx, int64_t j0, int64_t j1, int last,             \
                                    const kside *sd, double out[2])                                \
    {                                                                                              \
        const CTX kc = *(const CTX *)ctx; /* a local copy: stores to g cannot alias it */          \
        vd acc[2] = {VD_ZERO, VD_ZERO};                                                            \
        vf sm[2] = {vset(-INFINITY), vset(-INFINITY)};                                             \
        const vtail tl = vtail_of(kc.c);                                                           \
        const int tail = last && tl.n;                                                             \
        vf gtail = vset(0.0f);                                                                     \
        if (tail)                                                                                  \
            gtail = STEP(&kc, &tl, 0, tl.valid, acc);                                              \
        const vi all = vmask_first(KDV_W);                                                         \
        if (kc.g) {                                                                                \
            for (int64_t j = j0; j + KDV_W <= j1; j += KDV_W) {                                    \
                side_step(sd, NULL, j, sm);                                                        \
                vstore(kc.g + j, STEP(&kc, NULL, j, all, acc));                                    \
            }                                                                                      \
        } else { /* the loss alone: the gradient arithmetic is dead code here */                   \
            for (int64_t j = j0; j + KDV_W <= j1; j += KDV_W) {                                    \
                side_step(sd, NULL, j, sm);                                                        \
                (void)STEP(&kc, NULL, j, all, acc);                                                \
            }                                                                                      \
        }                                                                                          \
        if (tail && kc.g)                                                                          \
            tstore(kc.g, &tl, gtail);                                                              \
        side_finish(sd, tail ? &tl : NULL, sm);                                                    \
        out[0] = vdsum(acc[0]);                                                                    \
        out[1] = vdsum(acc[1]);                                                                    \
    }

/* the side maxima of a gradient pass (see kside): one vector at j, or the
 * row's tail (tl), then the segment's maxima to *sd */
KDV_INLINE void side_step(const kside *sd, const vtail *tl, int64_t j, vf sm[2])
{
    if (!sd)
        return;
    if (sd->pf && !tl && !(j & 15))
        __builtin_prefetch(sd->pf + j, 0, 2);
    sm[0] = vmax_keepnan(tl ? tload(sd->s, tl, -INFINITY) : vload(sd->s + j), sm[0]);
    if (sd->t)
        sm[1] = vmax_keepnan(tl ? tload(sd->t, tl, -INFINITY) : vload(sd->t + j), sm[1]);
}

KDV_INLINE void side_finish(const kside *sd, const vtail *tl, vf sm[2])
{
    if (!sd)
        return;
    if (tl)
        side_step(sd, tl, 0, sm);
    *sd->ms = vhmax(sm[0]);
    if (sd->t)
        *sd->mt = vhmax(sm[1]);
}

typedef struct {
    const float *s, *t, *es, *et, *e1;
    float *g;
    int64_t c;
    float ms, mt, rt, kq, cs, k1, koff;
    float tr;     /* the teacher's inverse temperature over the student's (1: one T) */
    int hard, pw; /* pw: e1 = es^pw (vpow_flush), or 0: e1 stored */
} kl_ctx;

/* one vector of kl_row's gradient pass, with ds = s - ms, dt = (t - mt) tr
 * and p = et rt the teacher's probabilities: acc[0] = sum p (dt - ds) (KL
 * is inv_t times that plus (ls - lt) sum p), acc[1] = sum ds (for the label
 * term's sum of log p1); g = cs (es rs - p) + coef (e1 r1 - off).  two: a
 * constant, the two temperatures differ (tr != 1; else not multiplied). */
KDV_INLINE vf kl_step(const kl_ctx *k, const vtail *tl, int64_t j, vi valid, vd *acc, int two)
{
    const vf ds = KDV_AT(k->s) - k->ms, es = KDV_AT(k->es);
    const vf dt = two ? (KDV_AT(k->t) - k->mt) * k->tr : KDV_AT(k->t) - k->mt;
    const vf p = KDV_AT(k->et) * k->rt;
    vacc_nz(&acc[0], p, dt - ds, valid, tl != NULL);
    vf g = es * k->kq - k->koff; /* koff = 0 without a label */
    g -= p * k->cs;
    if (k->hard) {
        const vf e1 = k->pw ? vpow_flush(es, k->pw) : KDV_AT(k->e1);
        g += e1 * k->k1;
        vacc(&acc[1], tl ? vsel(valid, ds, vset(0.0f)) : ds);
    }
    return g;
}

KDV_INLINE vf kl_step1(const kl_ctx *k, const vtail *tl, int64_t j, vi valid, vd *acc)
{
    return kl_step(k, tl, j, valid, acc, 0);
}
KDV_INLINE vf kl_step2(const kl_ctx *k, const vtail *tl, int64_t j, vi valid, vd *acc)
{
    return kl_step(k, tl, j, valid, acc, 1);
}
KDV_SEG_PASS(kl_seg1_, kl_ctx, kl_step1)
KDV_SEG_PASS(kl_seg2_, kl_ctx, kl_step2)

static void KDV_FN(kl_row_)(const float *s, const float *t, float *g, int64_t c, float inv_t,
                            float inv_tt, float cs, const kdi_simd_label *lab, float *work,
                            int nthr, kdi_pipe *pipe, double *kl_out, double *ce_out)
{
    kl_ctx k = {0};
    k.hard = lab->active;
    const int sep1 = k.hard && inv_t != 1.0f; /* softmax at T = 1 needs its own exps */
    const float s_y = k.hard ? s[lab->y] : 0.0f;
    float *part = work + 3 * c;
    k.s = s;
    k.t = t;
    k.g = g;
    k.c = c;
    k.tr = inv_tt / inv_t;
    k.es = work;
    k.et = work + c;
    k.e1 = sep1 ? work + 2 * c : k.es;
    /* at T = 2 or 4 the exps at T = 1 are powers of those at T (no third exp) */
    k.pw = sep1 && (inv_t == 0.5f || inv_t == 0.25f) ? (inv_t == 0.5f ? 2 : 4) : 0;
    row_maxima(pipe, s, t, c, nthr, part, &k.ms, &k.mt);
    kexp ex[3] = {{s, k.ms, inv_t, work, 0, NULL, NULL},
                  {t, k.mt, inv_tt, work + c, 0, NULL, NULL},
                  k.pw ? (kexp){work, 0.0f, 0.0f, NULL, k.pw, NULL, NULL}
                       : (kexp){s, k.ms, 1.0f, work + 2 * c, 0, NULL, NULL}};
    kside side;
    pipe_next(pipe, c, &ex[0], &ex[1], &side);
    double sum[3];
    seg_exps(ex, sep1 ? 3 : 2, c, nthr, part, sum);
    if (!sep1)
        sum[2] = sum[0];
    const float ls = logf((float)sum[0]), lt = logf((float)sum[1]), l1 = logf((float)sum[2]);
    const float rs = (float)(1.0 / sum[0]), r1 = (float)(1.0 / sum[2]);
    k.rt = (float)(1.0 / sum[1]);
    k.kq = cs * rs;
    k.cs = cs;
    k.k1 = k.hard ? lab->coef * r1 : 0.0f;
    k.koff = k.hard ? lab->coef * lab->off : 0.0f;
    double acc[2];
    seg_run(k.tr == 1.0f ? KDV_FN(kl_seg1_) : KDV_FN(kl_seg2_), &k, c, nthr, part,
            side.s ? &side : NULL, acc);
    /* sum p (lp - lq) = inv_t sum p (dt - ds) + (ls - lt) sum p, sum p = rt sum et */
    *kl_out = (double)inv_t * acc[0] + ((double)ls - lt) * ((double)k.rt * sum[1]);
    *ce_out = k.hard ? label_finish(lab, s_y, k.ms, l1, acc[1] - (double)c * l1, g) : 0.0;
}

typedef struct {
    const float *s, *es, *sv;
    float *g;
    int64_t c;
    float ms, ka, off, ks, kg, cs, kq; /* ks = rs sum_q, kg = cs ks, kq = cs ka */
} ce_ctx;

/* one vector of ce_row's gradient pass for a target source of kind `kind`
 * (a constant: see ce_row), with d = s - ms and q the target: acc[0] =
 * sum q d, acc[1] = sum q (sum q log p = acc[0] - ls acc[1]); g = cs (es rs
 * sum_q - q).  Kind 0 (no soft source, q = off everywhere) sums d alone. */
KDV_INLINE vf ce_step(const ce_ctx *k, const vtail *tl, int64_t j, vi valid, vd *acc, int kind)
{
    const vf d = KDV_AT(k->s) - k->ms, es = KDV_AT(k->es);
    if (kind == 0) {
        if (k->off != 0.0f)
            vacc(&acc[0], tl ? vsel(valid, d, vset(0.0f)) : d);
        return es * k->kg - k->cs * k->off;
    }
    const vf q = KDV_AT(k->sv) * k->ka + k->off;
    vacc_nz(&acc[0], q, d, valid, tl != NULL);
    vacc(&acc[1], tl ? vsel(valid, q, vset(0.0f)) : q);
    return k->cs * (es * k->ks - q);
}

/* ce_step for a teacher target without a label (q = ka sv, ka != 0, off =
 * 0): acc[0] = sum sv d over sv != 0 (ce_row multiplies it by ka), sum q is
 * ka sum sv = a and not summed; g = es kg - sv (cs ka) */
KDV_INLINE vf ce_step2(const ce_ctx *k, const vtail *tl, int64_t j, vi valid, vd *acc)
{
    const vf d = KDV_AT(k->s) - k->ms, es = KDV_AT(k->es), sv = KDV_AT(k->sv);
    vacc_nz(&acc[0], sv, d, valid, tl != NULL);
    return es * k->kg - sv * k->kq;
}

KDV_INLINE vf ce_step0(const ce_ctx *k, const vtail *tl, int64_t j, vi valid, vd *acc)
{
    return ce_step(k, tl, j, valid, acc, 0);
}
KDV_INLINE vf ce_step1(const ce_ctx *k, const vtail *tl, int64_t j, vi valid, vd *acc)
{
    return ce_step(k, tl, j, valid, acc, 1);
}
KDV_SEG_PASS(ce_seg0_, ce_ctx, ce_step0)
KDV_SEG_PASS(ce_seg1_, ce_ctx, ce_step1)
KDV_SEG_PASS(ce_seg2_, ce_ctx, ce_step2)

static double KDV_FN(ce_row_)(const float *s, const float *src, int src_kind, float *g, int64_t c,
                              float inv_t, float a, const kdi_simd_label *lab, float lab_sum,
                              float cs, float *work, int nthr, kdi_pipe *pipe)
{
    ce_ctx k = {0};
    float mt = 0.0f, *part = work + 3 * c;
    const float s_y = lab->active ? s[lab->y] : 0.0f;
    row_maxima(pipe, s, src_kind == 2 ? src : NULL, c, nthr, part, &k.ms, &mt);
    kexp ex[2] = {{s, k.ms, 1.0f, work, 0, NULL, NULL}, {src, mt, inv_t, work + c, 0, NULL, NULL}};
    kside side;
    pipe_next(pipe, c, &ex[0], src_kind == 2 ? &ex[1] : NULL, &side);
    double sum[2];
    seg_exps(ex, src_kind == 2 ? 2 : 1, c, nthr, part, sum);
    double sum_src = 0.0;
    k.sv = src;
    k.ka = a;
    if (src_kind == 2) {
        sum_src = 1.0;
        k.ka = a * (float)(1.0 / sum[1]);
        k.sv = work + c;
    } else if (src_kind == 1) {
        vd acc = VD_ZERO;
        for (int64_t j = 0; j + KDV_W <= c; j += KDV_W)
            vacc(&acc, vload(src + j));
        const vtail tl = vtail_of(c);
        if (tl.n)
            vacc(&acc, vsel(tl.valid, tload(src, &tl, 0.0f), vset(0.0f)));
        sum_src = vdsum(acc);
    }
    k.s = s;
    k.es = work;
    k.g = g;
    k.c = c;
    /* the log-sum in double: a confident row's sum is 1 + (a small rest), whose
     * float rounding would dominate its small loss */
    const double lsd = log(sum[0]);
    const float ls = (float)lsd;
    k.off = lab->active ? lab->off : 0.0f;
    k.cs = cs;
    k.ks = (float)(1.0 / sum[0]) * (float)(lab_sum + a * sum_src);
    k.kg = cs * k.ks;
    k.kq = cs * k.ka;
    double acc[2];
    const int teacher_only = src_kind == 2 && k.off == 0.0f && k.ka != 0.0f;
    seg_run(teacher_only ? KDV_FN(ce_seg2_)
            : src_kind   ? KDV_FN(ce_seg1_)
                         : KDV_FN(ce_seg0_),
            &k, c, nthr, part, side.s ? &side : NULL, acc);
    if (teacher_only) {
        acc[0] *= k.ka;
        acc[1] = a;
    }
    /* sum q log p = sum q d - ls sum q (kind 0: q = off everywhere).  ls is
     * finite or NaN; where it is NaN the sum is NaN unless every q is 0 (0 log
     * p is 0), which a zero sum q does not tell (q may be of either sign). */
    double sum_qlp = src_kind ? acc[0] - lsd * acc[1]
                              : (k.off != 0.0f ? (double)k.off * (acc[0] - (double)c * lsd) : 0.0);
    if (src_kind && ls != ls) {
        sum_qlp = 0.0;
        for (int64_t j = 0; j < c && sum_qlp == 0.0; j++)
            if (k.sv[j] * k.ka + k.off != 0.0f)
                sum_qlp = NAN;
    }
    double total = -sum_qlp;
    double qsum = src_kind ? acc[1] : (double)k.off * (double)c; /* d total / d lsd */
    if (lab->active) {
        const float extra = lab->on - lab->off;
        if (extra != 0.0f) {
            total -= (double)extra * ((double)(s_y - k.ms) - lsd);
            qsum += extra;
            if (g)
                g[lab->y] -= cs * extra;
        }
    }
    if (total < KDI_SMALL_LOSS && lsd == lsd && qsum != 0.0) {
        /* a confident row: its sum of exps is 1 + a small rest, summed in
         * float parts that round the rest; the log-sum again as log1p(rest)
         * in double from the stored exps (the max term is the only one above
         * 0.99 where the loss is below KDI_SMALL_LOSS) */
        double rest = 0.0;
        int64_t n1 = 0;
        for (int64_t j = 0; j < c; j++) {
            if (k.es[j] >= 0.99f)
                n1++;
            else
                rest += k.es[j];
        }
        if (n1 == 1)
            total += (log1p(rest) - lsd) * qsum;
    }
    return total;
}

typedef struct {
    const float *s, *t, *e1;
    float *g;
    int64_t c;
    float k, ms, l1, r1;
    const kdi_simd_label *lab;
} sq_ctx;

/* one vector of mse_row's gradient pass: acc = {sum of squares, sum of log p1} */
KDV_INLINE vf sq_step(const sq_ctx *k, const vtail *tl, int64_t j, vi valid, vd *acc)
{
    const vf zero = vset(0.0f), s = KDV_AT(k->s);
    vf d = s - KDV_AT(k->t);
    vacc(&acc[0], vsel(valid, d * d, zero));
    vf g = k->k * d;
    if (k->lab->active) {
        g += k->lab->coef * (KDV_AT(k->e1) * k->r1 - k->lab->off);
        vacc(&acc[1], vsel(valid, (s - k->ms) - k->l1, zero));
    }
    return g;
}

KDV_SEG_PASS(sq_seg_, sq_ctx, sq_step)

static void KDV_FN(mse_row_)(const float *s, const float *t, float *g, int64_t c, float kk,
                             const kdi_simd_label *lab, float *work, int nthr, kdi_pipe *pipe,
                             double *sq_out, double *ce_out)
{
    sq_ctx k = {0};
    float *part = work + 3 * c;
    const float s_y = lab->active ? s[lab->y] : 0.0f;
    kside side = {NULL, NULL, NULL, NULL, NULL};
    if (lab->active) {
        row_maxima(pipe, s, NULL, c, nthr, part, &k.ms, NULL);
        kexp ex = {s, k.ms, 1.0f, work, 0, NULL, NULL};
        pipe_next(pipe, c, &ex, NULL, &side);
        double s1;
        seg_exps(&ex, 1, c, nthr, part, &s1);
        k.l1 = logf((float)s1);
        k.r1 = (float)(1.0 / s1);
    }
    k.s = s;
    k.t = t;
    k.e1 = lab->active ? work : s; /* e1 is only read when a label is active */
    k.g = g;
    k.c = c;
    k.k = kk;
    k.lab = lab;
    double acc[2];
    seg_run(KDV_FN(sq_seg_), &k, c, nthr, part, side.s ? &side : NULL, acc);
    *sq_out = acc[0];
    *ce_out = lab->active ? label_finish(lab, s_y, k.ms, k.l1, acc[1], g) : 0.0;
}
