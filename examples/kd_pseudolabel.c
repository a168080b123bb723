/* kd-pseudolabel: semi-supervised Fashion-MNIST with 1,000 labelled images
 * (100 per class) and the rest unlabelled: FixMatch and the thresholds and
 * weights of kdlib's kd_threshold handle against supervised training.
 *
 * Every method trains the same model from the same initial weights on the
 * same labelled and unlabelled batches for the same number of steps:
 *   supervised  cross-entropy on a weak view of the labelled batch only;
 *   fixmatch    + the unlabelled term of FixMatch: the current model labels a
 *               weak view of each unlabelled image (no gradient), the model
 *               learns that label on a strong view where the confidence is
 *               >= tau (KD_LOSS_PSEUDO_LABEL, inclusive threshold);
 *   flexmatch   the same with FlexMatch's per-class curriculum thresholds,
 *   freematch   FreeMatch's self-adaptive thresholds,
 *   softmatch   SoftMatch's truncated-Gaussian weights: kd_threshold (USB's
 *               order: update with the batch's weak-view probabilities, then
 *               its weights) gives per-sample weights that scale each
 *               strong-view row of the pseudo-label loss (KD_ARG_WEIGHTS);
 *   adamatch    AdaMatch's relative threshold with distribution alignment:
 *               the handle also learns from the labelled rows' probabilities
 *               of the same step and gives the pseudo-labels (of the aligned
 *               rows), learned by cross-entropy with the 0/1 weights.
 * The unlabelled term is the mean over all mu * batch unlabelled rows (masked
 * rows count as 0), as FixMatch.  SGD with Nesterov momentum, FixMatch's
 * cosine lr * cos(7 pi k / 16 K), weight decay 5e-4; an EMA of the weights
 * (kd_ema) is evaluated too (with --ema-teacher 1 it also labels the weak
 * views, as Mean Teacher, instead of the current model; for adamatch the
 * labelled rows' probabilities stay the current model's, so p_target and
 * kappa are the student's and p_model the EMA's: not USB's AdaMatch).  The table gives the test accuracy of the model
 * and of its EMA, the unlabelled rows' mean weight (for 0/1 masks: the share
 * of rows used) and the weighted accuracy of their pseudo-labels.
 *
 * --methods picks the methods (comma-separated) so that several processes can
 * share them out; results do not depend on which others run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/ema.h"
#include "kdlib/kdlib.h"
#include "kdlib/threshold.h"
#include "blas_core.h"
#include "options.h"
#include "train.h"

typedef struct {
    const char *data, *model, *csv, *methods, *tsa, *strong_aug;
    int64_t seed, epochs, threads, limit_train, limit_test, labeled, steps, batch, mu, eval_every,
        flexmatch_warmup, ema_teacher;
    double lr, threshold, unlabeled_weight, ema_decay, weight_decay;
} config;

enum { M_SUPERVISED, M_FIXMATCH, M_FLEXMATCH, M_FREEMATCH, M_SOFTMATCH, M_ADAMATCH, NUM_METHODS };
static const char *const method_names[NUM_METHODS] = {"supervised", "fixmatch",  "flexmatch",
                                                      "freematch",  "softmatch", "adamatch"};

typedef struct {
    const config *cfg;
    const tr_dataset *train, *test;
    float background;
    const int32_t *labeled, *unlabeled;
    int64_t labeled_n, unlabeled_n;
    int selected[NUM_METHODS], num_selected;
    int32_t tsa;       /* --tsa */
    tr_aug strong_aug; /* --strong-aug */
    double model_acc[NUM_METHODS], ema_acc[NUM_METHODS], mean_weight[NUM_METHODS],
        weighted_acc[NUM_METHODS], seconds[NUM_METHODS];
} context;

static void die_kd(kd_status st, const char *what, const char *message)
{
    if (st != KD_OK) {
        fprintf(stderr, "kdlib: %s: %s: %s\n", what, kd_status_string(st), message);
        exit(1);
    }
}

static void *checked_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p) {
        fprintf(stderr, "error: out of memory\n");
        exit(1);
    }
    return p;
}

/* State of one run's training step. */
typedef struct {
    const context *x;
    int method, B, U;              /* labelled and unlabelled rows per step */
    tr_sampler labeled, unlabeled; /* the second draws positions in x->unlabeled */
    tr_rng aug_rng;
    kd_ema *ema;
    tr_model *teacher; /* --ema-teacher 1: the EMA weights label the weak views */
    kd_loss *ce, *pseudo;
    kd_threshold *th; /* flexmatch, freematch, softmatch, adamatch */
    int32_t tsa;      /* KD_TSA_* schedule of the supervised term */
    float *sup_mask;
    float *x_in, *x_weak, *dlogits, *weak_logits, *probs, *lprobs, *weights, *mask;
    int32_t *idx, *pos, *labels, *pred;
    int64_t *pos64;
    double weight_sum, weight_right; /* over every unlabelled row seen */
} step_state;

static void softmax_rows(int n, int c, const float *logits, float *p)
{
    for (int i = 0; i < n; i++) {
        const float *z = logits + (int64_t)i * c;
        float *q = p + (int64_t)i * c, zmax = z[0];
        for (int j = 1; j < c; j++)
            zmax = z[j] > zmax ? z[j] : zmax;
        double sum = 0.0;
        for (int j = 0; j < c; j++)
            sum += q[j] = expf(z[j] - zmax);
        for (int j = 0; j < c; j++)
            q[j] = (float)(q[j] / sum);
    }
}

/* The handle's per-sample weights of the unlabelled rows, USB's order: the
 * weak views' probabilities (and, for AdaMatch, the labelled rows' of this
 * step's forward, detached) update the state, then give the weights (and
 * AdaMatch's pseudo-labels). */
static void threshold_weights(step_state *s, const float *logits, int B, int U, int C)
{
    softmax_rows(U, C, s->weak_logits, s->probs);
    if (s->method == M_ADAMATCH) {
        softmax_rows(B, C, logits, s->lprobs);
        die_kd(kd_threshold_update_labeled_probs(s->th, B, C, s->lprobs, C), "update labelled",
               kd_threshold_last_error(s->th));
    }
    for (int i = 0; i < U; i++)
        s->pos64[i] = s->pos[i];
    die_kd(kd_threshold_update_probs(s->th, U, C, s->probs, C, s->pos64), "update",
           kd_threshold_last_error(s->th));
    die_kd(kd_threshold_weights_probs(s->th, U, C, s->probs, C, s->weights,
                                      s->method == M_ADAMATCH ? s->pred : NULL),
           "weights", kd_threshold_last_error(s->th));
}

static float semi_step(void *ctx, tr_model *m, int64_t step)
{
    step_state *s = ctx;
    const tr_dataset *d = s->x->train;
    const int C = d->classes, B = s->B, U = s->method == M_SUPERVISED ? 0 : s->U;
    const int64_t size = (int64_t)d->h * d->w;

    /* Rows 0..B-1: labelled images, weak view; rows B..B+U-1: unlabelled, strong view. */
    tr_sampler_next(&s->labeled, B, s->idx);
    tr_sampler_next(&s->unlabeled, U, s->pos);
    for (int i = 0; i < U; i++)
        s->idx[B + i] = s->x->unlabeled[s->pos[i]];
    tr_dataset_gather(d, s->idx, B + U, s->x_in);
    tr_augment(TR_AUG_WEAK, B, d->h, d->w, s->x->background, s->x_in, &s->aug_rng);
    if (U > 0) {
        memcpy(s->x_weak, s->x_in + B * size, (size_t)(U * size) * sizeof(float));
        tr_augment(TR_AUG_WEAK, U, d->h, d->w, s->x->background, s->x_weak, &s->aug_rng);
        tr_augment(s->x->strong_aug, U, d->h, d->w, s->x->background, s->x_in + B * size,
                   &s->aug_rng);
        /* The current model on the weak views, no gradient (the forward of
         * the training batch below overwrites what backward needs). */
        const float *t;
        if (s->teacher) {
            die_kd(kd_ema_copy_to_flat(s->ema, s->teacher->params), "ema copy",
                   kd_ema_last_error(s->ema));
            t = tr_model_forward(s->teacher, s->x_weak, U);
        } else {
            t = tr_model_forward(m, s->x_weak, U);
        }
        memcpy(s->weak_logits, t, (size_t)(U * C) * sizeof(float));
    }
    for (int i = 0; i < B; i++)
        s->labels[i] = d->y[s->idx[i]];

    const float *logits = tr_model_forward(m, s->x_in, B + U);
    if (U > 0 && s->th)
        threshold_weights(s, logits, B, U, C);
    float loss = 0.0f, unlabeled_loss = 0.0f;
    die_kd(kd_loss_bind_matrix(s->ce, KD_ARG_STUDENT, logits, C), "bind",
           kd_loss_last_error(s->ce));
    kd_loss_bind_labels(s->ce, s->labels);
    kd_loss_bind_weights(s->ce, NULL);
    if (s->tsa != KD_TSA_NONE) {
        /* UDA's training-signal annealing: labelled rows whose label's
         * probability is above the threshold drop out (the paper's rule; USB's
         * max-softmax rule masks every row at the start, where the threshold
         * is 1/C, and fixmatch collapsed to 10% at step 1,000, seed 1) */
        double tsa;
        char err[256];
        die_kd(kd_tsa_threshold(s->tsa, step, s->x->cfg->steps, C, &tsa, err, sizeof err), "tsa",
               err);
        die_kd(
            kd_tsa_mask(B, C, logits, C, s->labels, -100, tsa, s->sup_mask, NULL, err, sizeof err),
            "tsa mask", err);
        kd_loss_bind_weights(s->ce, s->sup_mask);
    }
    kd_loss_bind_output(s->ce, KD_ARG_GRAD_STUDENT, s->dlogits, C);
    die_kd(kd_loss_forward_backward(s->ce, B, &loss), "cross-entropy", kd_loss_last_error(s->ce));
    if (U > 0) {
        const int adamatch = s->method == M_ADAMATCH;
        if (adamatch) {
            /* the handle's pseudo-labels (of the aligned rows), 0/1 weights */
            die_kd(kd_loss_bind_matrix(s->ce, KD_ARG_STUDENT, logits + (int64_t)B * C, C), "bind",
                   kd_loss_last_error(s->ce));
            die_kd(kd_loss_bind_labels(s->ce, s->pred), "bind", kd_loss_last_error(s->ce));
            die_kd(kd_loss_bind_weights(s->ce, s->weights), "bind", kd_loss_last_error(s->ce));
            die_kd(kd_loss_bind_output(s->ce, KD_ARG_GRAD_STUDENT, s->dlogits + (int64_t)B * C, C),
                   "bind", kd_loss_last_error(s->ce));
            die_kd(kd_loss_forward_backward(s->ce, U, &unlabeled_loss), "adamatch",
                   kd_loss_last_error(s->ce));
        } else {
            kd_loss_bind_matrix(s->pseudo, KD_ARG_STUDENT, logits + (int64_t)B * C, C);
            kd_loss_bind_matrix(s->pseudo, KD_ARG_TEACHER, s->weak_logits, C);
            kd_loss_bind_output(s->pseudo, KD_ARG_GRAD_STUDENT, s->dlogits + (int64_t)B * C, C);
            die_kd(kd_loss_bind_weights(s->pseudo, s->th ? s->weights : NULL), "bind weights",
                   kd_loss_last_error(s->pseudo));
            die_kd(kd_loss_bind_output(s->pseudo, KD_ARG_MASK, s->mask, 0), "bind mask",
                   kd_loss_last_error(s->pseudo));
            die_kd(kd_loss_bind_output_labels(s->pseudo, KD_ARG_PSEUDO_LABELS, s->pred),
                   "bind labels", kd_loss_last_error(s->pseudo));
            die_kd(kd_loss_forward_backward(s->pseudo, U, &unlabeled_loss), "pseudo-label",
                   kd_loss_last_error(s->pseudo));
        }
        float w = (float)s->x->cfg->unlabeled_weight;
        for (int64_t i = (int64_t)B * C; i < (int64_t)(B + U) * C; i++)
            s->dlogits[i] *= w;
        for (int i = 0; i < U; i++) {
            double wi = adamatch ? s->weights[i] : s->mask[i] * (s->th ? s->weights[i] : 1.0f);
            s->weight_sum += wi;
            if (s->pred[i] == d->y[s->idx[B + i]])
                s->weight_right += wi;
        }
        loss += w * unlabeled_loss;
    }
    tr_model_backward(m, s->dlogits);
    return loss;
}

static void create_threshold(step_state *s, const context *x, int C)
{
    static const kd_threshold_algorithm algorithm[NUM_METHODS] = {
        [M_FLEXMATCH] = KD_THRESHOLD_FLEXMATCH,
        [M_FREEMATCH] = KD_THRESHOLD_FREEMATCH,
        [M_SOFTMATCH] = KD_THRESHOLD_SOFTMATCH,
        [M_ADAMATCH] = KD_THRESHOLD_ADAMATCH};
    if (!algorithm[s->method])
        return;
    die_kd(kd_threshold_create(&s->th, algorithm[s->method], x->unlabeled_n, C), "threshold",
           kd_threshold_last_error(NULL));
    if (s->method == M_FLEXMATCH) {
        /* USB's FlexMatch: tau 0.95, >= tau, convex mapping, threshold warm-up. */
        die_kd(kd_threshold_set_float(s->th, KD_THRESHOLD_PARAM_THRESHOLD, x->cfg->threshold),
               "flexmatch threshold", kd_threshold_last_error(s->th));
        kd_threshold_set_int(s->th, KD_THRESHOLD_PARAM_NON_STRICT, 1);
        die_kd(kd_threshold_set_int(s->th, KD_THRESHOLD_PARAM_WARMUP, x->cfg->flexmatch_warmup),
               "flexmatch warm-up", kd_threshold_last_error(s->th));
    }
    if (s->method == M_ADAMATCH) /* USB's p_cutoff 0.95 (the --threshold) */
        die_kd(kd_threshold_set_float(s->th, KD_THRESHOLD_PARAM_THRESHOLD, x->cfg->threshold),
               "adamatch threshold", kd_threshold_last_error(s->th));
    /* FreeMatch, SoftMatch and AdaMatch: USB's defaults (EMA momentum 0.999;
     * SoftMatch global statistics, 2 sigma, uniform distribution alignment;
     * AdaMatch alignment to the labelled predictions). */
}

/* One run (a tr_run_fn); `index` counts the selected methods. */
static void run(void *ctx, int index, tr_log *log)
{
    context *x = ctx;
    const config *cfg = x->cfg;
    const tr_dataset *d = x->train;
    const int method = x->selected[index];
    const int C = d->classes, B = (int)cfg->batch, U = (int)(cfg->batch * cfg->mu);
    const uint64_t seed = (uint64_t)cfg->seed;
    const double t0 = tr_now();
    char err[256];
    tr_model *m = tr_model_create(cfg->model, d->h, d->w, C, B + U, err, sizeof err);
    if (!m) {
        fprintf(stderr, "error: %s\n", err);
        exit(2);
    }
    tr_rng init;
    tr_rng_seed(&init, seed, 10);
    tr_model_init(m, &init);

    step_state s = {.x = x, .method = method, .B = B, .U = U, .tsa = x->tsa};
    tr_rng r;
    tr_rng_seed(&r, seed, 20);
    int32_t *positions = checked_malloc((size_t)x->unlabeled_n * sizeof *positions);
    for (int64_t i = 0; i < x->unlabeled_n; i++)
        positions[i] = (int32_t)i;
    if (tr_sampler_init(&s.labeled, x->labeled, x->labeled_n, r) != 0)
        exit(1);
    tr_rng_seed(&r, seed, 21);
    if (tr_sampler_init(&s.unlabeled, positions, x->unlabeled_n, r) != 0)
        exit(1);
    free(positions);
    tr_rng_seed(&s.aug_rng, seed, 22);
    const size_t size = (size_t)d->h * d->w;
    s.x_in = checked_malloc((size_t)(B + U) * size * sizeof(float));
    s.x_weak = checked_malloc((size_t)U * size * sizeof(float));
    s.dlogits = checked_malloc((size_t)((B + U) * C) * sizeof(float));
    s.weak_logits = checked_malloc((size_t)(U * C) * sizeof(float));
    s.probs = checked_malloc((size_t)(U * C) * sizeof(float));
    s.lprobs = checked_malloc((size_t)(B * C) * sizeof(float));
    s.sup_mask = checked_malloc((size_t)B * sizeof(float));
    s.weights = checked_malloc((size_t)U * sizeof(float));
    s.mask = checked_malloc((size_t)U * sizeof(float));
    s.idx = checked_malloc((size_t)(B + U) * sizeof(int32_t));
    s.pos = checked_malloc((size_t)U * sizeof(int32_t));
    s.labels = checked_malloc((size_t)B * sizeof(int32_t));
    s.pred = checked_malloc((size_t)U * sizeof(int32_t));
    s.pos64 = checked_malloc((size_t)U * sizeof(int64_t));

    die_kd(kd_loss_create(&s.ce, KD_LOSS_CROSS_ENTROPY, C), "create", "");
    die_kd(kd_loss_create(&s.pseudo, KD_LOSS_PSEUDO_LABEL, C), "create", "");
    /* FixMatch: the loss's own mask, conf >= tau; the others: every row
     * (conf >= 0) scaled by the handle's weights. */
    die_kd(kd_loss_set_float(s.pseudo, KD_PARAM_THRESHOLD,
                             method == M_FIXMATCH ? cfg->threshold : 0.0),
           "threshold", kd_loss_last_error(s.pseudo));
    die_kd(kd_loss_set_int(s.pseudo, KD_PARAM_THRESHOLD_MODE, KD_THRESHOLD_INCLUSIVE),
           "threshold mode", kd_loss_last_error(s.pseudo));
    s.ema = tr_ema_create(m, cfg->ema_decay);
    create_threshold(&s, x, C);
    if (cfg->ema_teacher && U > 0) {
        s.teacher = tr_model_create(cfg->model, d->h, d->w, C, U, err, sizeof err);
        if (!s.teacher) {
            fprintf(stderr, "error: %s\n", err);
            exit(2);
        }
    }

    tr_train_opts o = {.run = method_names[method],
                       .steps = cfg->steps,
                       .eval_every = cfg->eval_every,
                       .samples_per_epoch = x->labeled_n,
                       .batch = B,
                       .lr = (float)cfg->lr,
                       .momentum = 0.9f,
                       .nesterov = 1,
                       .weight_decay = (float)cfg->weight_decay,
                       .cosine = 2,
                       .after_update = tr_ema_update,
                       .hook_ctx = s.ema};
    char desc[256];
    snprintf(desc, sizeof desc, "%s, %lld labelled%s, %lld steps", cfg->model,
             (long long)x->labeled_n, method == M_SUPERVISED ? " only" : " + unlabelled",
             (long long)cfg->steps);
    tr_log_begin(log, method_names[method], desc);
    if (tr_train(m, &o, semi_step, &s, x->test, log) != 0)
        exit(1);
    double vloss;
    tr_evaluate(m, x->test, &vloss, &x->model_acc[method]);
    kd_ema_copy_to_flat(s.ema, m->params);
    tr_evaluate(m, x->test, &vloss, &x->ema_acc[method]);
    double rows = (double)U * (double)cfg->steps;
    x->mean_weight[method] = method == M_SUPERVISED ? 0.0 : s.weight_sum / rows;
    x->weighted_acc[method] = s.weight_sum > 0.0 ? s.weight_right / s.weight_sum : 0.0;
    x->seconds[method] = tr_now() - t0;

    kd_threshold_destroy(s.th);
    kd_ema_destroy(s.ema);
    tr_model_destroy(s.teacher);
    kd_loss_destroy(s.ce);
    kd_loss_destroy(s.pseudo);
    tr_sampler_free(&s.labeled);
    tr_sampler_free(&s.unlabeled);
    free(s.x_in), free(s.x_weak), free(s.dlogits), free(s.weak_logits), free(s.probs);
    free(s.lprobs);
    free(s.sup_mask);
    free(s.weights), free(s.mask), free(s.idx), free(s.pos), free(s.labels), free(s.pred);
    free(s.pos64);
    tr_model_destroy(m);
}

/* "supervised,fixmatch" -> x->selected (in the order given, no repeats). */
static int parse_methods(const char *list, context *x)
{
    const char *p = list;
    x->num_selected = 0;
    while (*p) {
        size_t len = strcspn(p, ",");
        int found = -1;
        for (int k = 0; k < NUM_METHODS; k++)
            if (strlen(method_names[k]) == len && strncmp(p, method_names[k], len) == 0)
                found = k;
        for (int i = 0; i < x->num_selected; i++)
            if (x->selected[i] == found)
                found = -2;
        if (found < 0) {
            fprintf(stderr,
                    "error: --methods: %s '%.*s' (methods: supervised, fixmatch, "
                    "flexmatch, freematch, softmatch, adamatch)\n",
                    found == -2 ? "repeated" : "unknown", (int)len, p);
            return -1;
        }
        x->selected[x->num_selected++] = found;
        p += len;
        if (*p == ',')
            p++;
    }
    if (x->num_selected == 0) {
        fprintf(stderr, "error: --methods: no method\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    tr_blas_core(argc, argv, "kd-pseudolabel");
    config cfg = {.data = "/usr/share/datasets/fashion-mnist",
                  .model = "conv16-conv32-fc64",
                  .methods = "supervised,fixmatch,flexmatch,freematch,softmatch,adamatch",
                  .seed = 1,
                  .epochs = 1,
                  .threads = 0,
                  .labeled = 1000,
                  .steps = 4000,
                  .batch = 64,
                  .mu = 3,
                  .eval_every = 500,
                  .lr = 0.03,
                  .threshold = 0.95,
                  .unlabeled_weight = 1.0,
                  .ema_decay = 0.999,
                  .weight_decay = 5e-4,
                  .flexmatch_warmup = 1,
                  .tsa = "none",
                  .strong_aug = "basic"};
    const tr_option opts[] = {
        {"data", TR_OPT_STRING, &cfg.data, "directory with the IDX files (Fashion-MNIST or MNIST)"},
        {"methods", TR_OPT_STRING, &cfg.methods,
         "comma-separated: supervised, fixmatch, flexmatch, freematch, softmatch, adamatch"},
        {"seed", TR_OPT_INT, &cfg.seed, "random seed"},
        {"epochs", TR_OPT_INT, &cfg.epochs,
         "multiplies --steps (an 'epoch' here is --steps steps)"},
        {"threads", TR_OPT_INT, &cfg.threads,
         "threads; the methods train in parallel, 0 = all cores"},
        {"limit-train", TR_OPT_INT, &cfg.limit_train,
         "use only the first N training images (0 = all)"},
        {"limit-test", TR_OPT_INT, &cfg.limit_test, "use only the first N test images (0 = all)"},
        {"labeled", TR_OPT_INT, &cfg.labeled,
         "labelled images (class-balanced); the rest are unlabelled"},
        {"steps", TR_OPT_INT, &cfg.steps, "SGD steps per method"},
        {"eval-every", TR_OPT_INT, &cfg.eval_every, "steps per table row"},
        {"batch", TR_OPT_INT, &cfg.batch, "labelled images per step"},
        {"mu", TR_OPT_INT, &cfg.mu, "unlabelled images per labelled image in a step"},
        {"lr", TR_OPT_FLOAT, &cfg.lr,
         "learning rate (SGD, Nesterov momentum 0.9, FixMatch's cosine)"},
        {"weight-decay", TR_OPT_FLOAT, &cfg.weight_decay, "weight decay (every parameter)"},
        {"threshold", TR_OPT_FLOAT, &cfg.threshold,
         "confidence threshold tau (fixmatch, flexmatch, adamatch's relative one)"},
        {"unlabeled-weight", TR_OPT_FLOAT, &cfg.unlabeled_weight,
         "weight lambda_u of the unlabelled loss"},
        {"ema-decay", TR_OPT_FLOAT, &cfg.ema_decay,
         "decay of the evaluated EMA (Mean Teacher warm-up)"},
        {"ema-teacher", TR_OPT_INT, &cfg.ema_teacher,
         "1: the EMA of the weights, not the current model, labels the weak views"},
        {"flexmatch-warmup", TR_OPT_INT, &cfg.flexmatch_warmup,
         "FlexMatch threshold warm-up (1: unused samples count, as the paper and USB)"},
        {"tsa", TR_OPT_STRING, &cfg.tsa,
         "UDA's training-signal annealing of the supervised term: none, linear, exp, log"},
        {"strong-aug", TR_OPT_STRING, &cfg.strong_aug,
         "strong view: basic (shift, flip, contrast, cutout, noise) or affine (+ rotation, "
         "shear, scale)"},
        {"model", TR_OPT_STRING, &cfg.model, "model (convN-...-fcN)"},
        {"csv", TR_OPT_STRING, &cfg.csv, "also write every table row to this CSV file"},
    };
    int rc = tr_parse_options(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                              "Semi-supervised training with few labels: supervised only vs "
                              "FixMatch, FlexMatch, FreeMatch, SoftMatch and AdaMatch (kdlib).");
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    if (cfg.batch < 1 || cfg.mu < 1 || cfg.batch * (1 + cfg.mu) > 4096 || cfg.steps < 1 ||
        cfg.epochs < 1 || cfg.labeled < 1) {
        fprintf(stderr, "error: batch, mu, steps, epochs and labeled must be >= 1\n");
        return 2;
    }
    context x = {.cfg = &cfg};
    if (parse_methods(cfg.methods, &x) != 0)
        return 2;
    static const char *const tsa_names[] = {"none", "linear", "exp", "log"};
    x.tsa = -1;
    for (int32_t k = KD_TSA_NONE; k <= KD_TSA_LOG; k++)
        if (strcmp(cfg.tsa, tsa_names[k]) == 0)
            x.tsa = k;
    x.strong_aug = strcmp(cfg.strong_aug, "basic") == 0    ? TR_AUG_STRONG
                   : strcmp(cfg.strong_aug, "affine") == 0 ? TR_AUG_STRONG_AFFINE
                                                           : TR_AUG_NONE;
    if (x.strong_aug == TR_AUG_NONE) {
        fprintf(stderr, "error: --strong-aug %s: expected basic or affine\n", cfg.strong_aug);
        return 2;
    }
    if (x.tsa < 0) {
        fprintf(stderr, "error: --tsa %s: expected none, linear, exp or log\n", cfg.tsa);
        return 2;
    }
    cfg.steps *= cfg.epochs;
    double t_start = tr_now();
    int threads = tr_set_threads((int)cfg.threads);
    tr_dataset train, test;
    float background;
    if (tr_dataset_load_pair(cfg.data, cfg.limit_train, cfg.limit_test, &train, &test,
                             &background) != 0)
        return 1;
    tr_log log;
    if (tr_log_open(&log, cfg.csv) != 0)
        return 1;
    printf(
        "kd-pseudolabel: kdlib %s, %lld train / %lld test images from %s, %d threads, seed %lld\n",
        kd_version_string(), (long long)train.n, (long long)test.n, cfg.data, threads,
        (long long)cfg.seed);

    int32_t *labeled = checked_malloc((size_t)train.n * sizeof *labeled);
    int32_t *unlabeled = checked_malloc((size_t)train.n * sizeof *unlabeled);
    tr_rng split_rng;
    tr_rng_seed(&split_rng, (uint64_t)cfg.seed, 100);
    x.train = &train;
    x.test = &test;
    x.background = background;
    x.labeled = labeled;
    x.unlabeled = unlabeled;
    x.labeled_n = tr_dataset_split_balanced(&train, cfg.labeled, &split_rng, labeled, unlabeled,
                                            &x.unlabeled_n);
    if (x.unlabeled_n < 1) {
        fprintf(stderr, "error: no unlabelled images left\n");
        return 2;
    }
    tr_run_parallel(x.num_selected, threads, run, &x, &log);

    printf("\n== kd-pseudolabel results (test accuracy on %lld images, %lld labelled, seed %lld, "
           "%lld steps, batch %lld + %lld unlabelled, tau = %g)\n",
           (long long)test.n, (long long)x.labeled_n, (long long)cfg.seed, (long long)cfg.steps,
           (long long)cfg.batch, (long long)(cfg.batch * cfg.mu), cfg.threshold);
    printf("%-12s %8s %8s %14s %15s %8s\n", "method", "model", "EMA", "unlabelled used",
           "their accuracy", "time");
    for (int i = 0; i < x.num_selected; i++) {
        int k = x.selected[i];
        if (k == M_SUPERVISED)
            printf("%-12s %7.2f%% %7.2f%% %14s %15s %7.0fs\n", method_names[k],
                   100 * x.model_acc[k], 100 * x.ema_acc[k], "-", "-", x.seconds[k]);
        else
            printf("%-12s %7.2f%% %7.2f%% %13.1f%% %14.1f%% %7.0fs\n", method_names[k],
                   100 * x.model_acc[k], 100 * x.ema_acc[k], 100 * x.mean_weight[k],
                   100 * x.weighted_acc[k], x.seconds[k]);
    }
    printf("(unlabelled used: the mean weight of the unlabelled rows, for 0/1 masks the share "
           "used; their accuracy: weighted by the same weights)\n");
    printf("total time %.0f s\n", tr_now() - t_start);
    free(labeled);
    free(unlabeled);
    tr_log_close(&log);
    tr_dataset_free(&train);
    tr_dataset_free(&test);
    return 0;
}
