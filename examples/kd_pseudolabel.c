/* kd-pseudolabel: semi-supervised Fashion-MNIST with 1,000 labelled images
 * (100 per class) and the rest unlabelled, with kdlib's pseudo-label loss,
 * EMA teacher and FlexMatch thresholds.
 *
 * Runs (same model, seed, labelled batches and step count):
 *   supervised  cross-entropy on the labelled images only;
 *   pseudo      + pseudo-labels: the EMA teacher (kd_ema) labels a weak view
 *               of unlabelled images, the student learns them on a strong
 *               view where the teacher's confidence > tau (KD_LOSS_PSEUDO_LABEL);
 *   flexmatch   the same with FlexMatch's per-class thresholds (kd_flexmatch,
 *               fed by kd_select_pseudo_labels).
 * Ends with a table: test accuracy of the student and of the EMA teacher,
 * and the share and accuracy of the pseudo-labels used. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/ema.h"
#include "kdlib/kdlib.h"
#include "blas_core.h"
#include "options.h"
#include "train.h"

typedef struct {
    const char *data, *model, *csv;
    int64_t seed, epochs, threads, limit_train, limit_test, labeled, steps, batch, mu,
        eval_every;
    double lr, threshold, unlabeled_weight, ema_decay;
    int64_t flexmatch_warmup, weak_student;
} config;

enum { RUN_SUPERVISED, RUN_PSEUDO, RUN_FLEXMATCH, NUM_RUNS };
static const char *const run_names[NUM_RUNS] = {"supervised", "pseudo-label", "flexmatch"};

typedef struct {
    const config *cfg;
    const tr_dataset *train, *test;
    float background;
    const int32_t *labeled, *unlabeled;
    int64_t labeled_n, unlabeled_n;
    double student_acc[NUM_RUNS], teacher_acc[NUM_RUNS], used[NUM_RUNS], correct[NUM_RUNS];
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
    int kind, B, U; /* run kind, labelled and unlabelled rows per step */
    tr_sampler labeled, unlabeled; /* the second draws positions in x->unlabeled */
    tr_rng aug_rng;
    tr_model *teacher;  /* holds the EMA weights for the weak-view forward */
    kd_ema *ema;
    kd_loss *ce, *pseudo;
    kd_flexmatch *flexmatch;
    float *x_in, *x_weak, *dlogits, *teacher_logits, *conf, *mask, *tau;
    int32_t *idx, *pos, *labels, *pred;
    int64_t *pos64;
    int64_t used, correct; /* pseudo-labels used, and right (the true labels are known) */
} step_state;

static float semi_step(void *ctx, tr_model *m, int64_t step)
{
    (void)step;
    step_state *s = ctx;
    const tr_dataset *d = s->x->train;
    const int C = d->classes, B = s->B, U = s->kind == RUN_SUPERVISED ? 0 : s->U;
    const int64_t size = (int64_t)d->h * d->w;
    char err[256];

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
        tr_augment(s->x->cfg->weak_student ? TR_AUG_WEAK : TR_AUG_STRONG, U, d->h, d->w,
                   s->x->background, s->x_in + B * size, &s->aug_rng);
        /* Teacher: the EMA weights on the weak view. */
        kd_ema_copy_to_flat(s->ema, s->teacher->params);
        const float *t = tr_model_forward(s->teacher, s->x_weak, U);
        memcpy(s->teacher_logits, t, (size_t)(U * C) * sizeof(float));
    }
    for (int i = 0; i < B; i++)
        s->labels[i] = d->y[s->idx[i]];

    const float *logits = tr_model_forward(m, s->x_in, B + U);
    float loss = 0.0f, unlabeled_loss = 0.0f;
    die_kd(kd_loss_bind_matrix(s->ce, KD_ARG_STUDENT, logits, C), "bind", kd_loss_last_error(s->ce));
    kd_loss_bind_labels(s->ce, s->labels);
    kd_loss_bind_output(s->ce, KD_ARG_GRAD_STUDENT, s->dlogits, C);
    die_kd(kd_loss_forward_backward(s->ce, B, &loss), "cross-entropy", kd_loss_last_error(s->ce));
    if (U > 0) {
        if (s->kind == RUN_FLEXMATCH) {
            /* Thresholds of the state so far, then record this batch. */
            die_kd(kd_flexmatch_thresholds(s->flexmatch, s->tau), "thresholds", "");
            die_kd(kd_loss_bind_vector(s->pseudo, KD_ARG_CLASS_THRESHOLDS, s->tau), "bind",
                   kd_loss_last_error(s->pseudo));
            die_kd(kd_select_pseudo_labels(U, C, s->teacher_logits, C, KD_SELECT_LOGITS,
                                           (float)s->x->cfg->threshold, NULL, 0, s->conf, s->pred,
                                           NULL, NULL, err, sizeof err),
                   "select", err);
            for (int i = 0; i < U; i++)
                s->pos64[i] = s->pos[i];
            die_kd(kd_flexmatch_update(s->flexmatch, U, s->pos64, s->conf, s->pred), "update",
                   kd_flexmatch_last_error(s->flexmatch));
        }
        kd_loss_bind_matrix(s->pseudo, KD_ARG_STUDENT, logits + (int64_t)B * C, C);
        kd_loss_bind_matrix(s->pseudo, KD_ARG_TEACHER, s->teacher_logits, C);
        kd_loss_bind_output(s->pseudo, KD_ARG_GRAD_STUDENT, s->dlogits + (int64_t)B * C, C);
        die_kd(kd_loss_bind_output(s->pseudo, KD_ARG_MASK, s->mask, 0), "bind mask",
               kd_loss_last_error(s->pseudo));
        die_kd(kd_loss_bind_output_labels(s->pseudo, KD_ARG_PSEUDO_LABELS, s->pred), "bind labels",
               kd_loss_last_error(s->pseudo));
        die_kd(kd_loss_forward_backward(s->pseudo, U, &unlabeled_loss), "pseudo-label",
               kd_loss_last_error(s->pseudo));
        float w = (float)s->x->cfg->unlabeled_weight;
        for (int64_t i = (int64_t)B * C; i < (int64_t)(B + U) * C; i++)
            s->dlogits[i] *= w;
        for (int i = 0; i < U; i++)
            if (s->mask[i] > 0.0f) {
                s->used++;
                s->correct += s->pred[i] == d->y[s->idx[B + i]];
            }
        loss += w * unlabeled_loss;
    }
    tr_model_backward(m, s->dlogits);
    return loss;
}

static void ema_update(void *ctx, tr_model *m)
{
    step_state *s = ctx;
    die_kd(kd_ema_update_flat(s->ema, m->params), "ema update", kd_ema_last_error(s->ema));
}

/* One run (a tr_run_fn). */
static void run(void *ctx, int kind, tr_log *log)
{
    context *x = ctx;
    const config *cfg = x->cfg;
    const tr_dataset *d = x->train;
    const int C = d->classes, B = (int)cfg->batch, U = (int)(cfg->batch * cfg->mu);
    const uint64_t seed = (uint64_t)cfg->seed;
    char err[256];
    tr_model *m = tr_model_create(cfg->model, d->h, d->w, C, B + U, err, sizeof err);
    tr_model *teacher = tr_model_create(cfg->model, d->h, d->w, C, U > 0 ? U : 1, err, sizeof err);
    if (!m || !teacher) {
        fprintf(stderr, "error: %s\n", err);
        exit(2);
    }
    tr_rng init;
    tr_rng_seed(&init, seed, 10);
    tr_model_init(m, &init);

    step_state s = {.x = x, .kind = kind, .B = B, .U = U, .teacher = teacher};
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
    s.teacher_logits = checked_malloc((size_t)(U * C) * sizeof(float));
    s.conf = checked_malloc((size_t)U * sizeof(float));
    s.mask = checked_malloc((size_t)U * sizeof(float));
    s.tau = checked_malloc((size_t)C * sizeof(float));
    s.idx = checked_malloc((size_t)(B + U) * sizeof(int32_t));
    s.pos = checked_malloc((size_t)U * sizeof(int32_t));
    s.labels = checked_malloc((size_t)B * sizeof(int32_t));
    s.pred = checked_malloc((size_t)U * sizeof(int32_t));
    s.pos64 = checked_malloc((size_t)U * sizeof(int64_t));

    die_kd(kd_loss_create(&s.ce, KD_LOSS_CROSS_ENTROPY, C), "create", "");
    die_kd(kd_loss_create(&s.pseudo, KD_LOSS_PSEUDO_LABEL, C), "create", "");
    die_kd(kd_loss_set_float(s.pseudo, KD_PARAM_THRESHOLD, cfg->threshold), "threshold",
           kd_loss_last_error(s.pseudo));
    die_kd(kd_ema_create_flat(&s.ema, m->params, m->num_params), "ema", kd_ema_last_error(NULL));
    die_kd(kd_ema_set_float(s.ema, KD_EMA_PARAM_DECAY, (float)cfg->ema_decay), "ema decay",
           kd_ema_last_error(s.ema));
    kd_ema_set_int(s.ema, KD_EMA_PARAM_WARMUP, KD_EMA_WARMUP_MEAN_TEACHER);
    if (kind == RUN_FLEXMATCH) {
        die_kd(kd_flexmatch_create(&s.flexmatch, x->unlabeled_n, C), "flexmatch",
               kd_flexmatch_last_error(NULL));
        die_kd(kd_flexmatch_set_float(s.flexmatch, KD_FLEXMATCH_PARAM_THRESHOLD,
                                      (float)cfg->threshold),
               "flexmatch threshold", kd_flexmatch_last_error(s.flexmatch));
        die_kd(kd_flexmatch_set_int(s.flexmatch, KD_FLEXMATCH_PARAM_WARMUP, cfg->flexmatch_warmup),
               "flexmatch warm-up", kd_flexmatch_last_error(s.flexmatch));
    }

    tr_train_opts o = {.run = run_names[kind], .steps = cfg->steps, .eval_every = cfg->eval_every,
                       .samples_per_epoch = x->labeled_n, .batch = B, .lr = (float)cfg->lr,
                       .momentum = 0.9f, .weight_decay = 5e-4f, .cosine = 1,
                       .after_update = ema_update, .hook_ctx = &s};
    char desc[256];
    snprintf(desc, sizeof desc, "%s, %lld labelled%s, %lld steps", cfg->model,
             (long long)x->labeled_n,
             kind == RUN_SUPERVISED ? " only"
             : kind == RUN_PSEUDO   ? " + unlabelled with EMA-teacher pseudo-labels"
                                    : " + unlabelled with FlexMatch thresholds",
             (long long)cfg->steps);
    tr_log_begin(log, run_names[kind], desc);
    if (tr_train(m, &o, semi_step, &s, x->test, log) != 0)
        exit(1);
    double vloss;
    tr_evaluate(m, x->test, &vloss, &x->student_acc[kind]);
    kd_ema_copy_to_flat(s.ema, m->params);
    tr_evaluate(m, x->test, &vloss, &x->teacher_acc[kind]);
    x->used[kind] = U > 0 ? (double)s.used / ((double)U * (double)cfg->steps) : 0.0;
    x->correct[kind] = s.used ? (double)s.correct / (double)s.used : 0.0;

    kd_flexmatch_destroy(s.flexmatch);
    kd_ema_destroy(s.ema);
    kd_loss_destroy(s.ce);
    kd_loss_destroy(s.pseudo);
    tr_sampler_free(&s.labeled);
    tr_sampler_free(&s.unlabeled);
    free(s.x_in), free(s.x_weak), free(s.dlogits), free(s.teacher_logits), free(s.conf);
    free(s.mask), free(s.tau), free(s.idx), free(s.pos), free(s.labels), free(s.pred);
    free(s.pos64);
    tr_model_destroy(teacher);
    tr_model_destroy(m);
}

int main(int argc, char **argv)
{
    tr_blas_core(argc, argv, "kd-pseudolabel");
    config cfg = {.data = "/usr/share/datasets/fashion-mnist", .model = "conv16-conv32-fc64",
                  .seed = 1, .epochs = 1, .threads = 0, .labeled = 1000, .steps = 1500,
                  .batch = 32, .mu = 3, .eval_every = 500, .lr = 0.03, .threshold = 0.95,
                  .unlabeled_weight = 1.0, .ema_decay = 0.99};
    const tr_option opts[] = {
        {"data", TR_OPT_STRING, &cfg.data, "directory with the IDX files (Fashion-MNIST or MNIST)"},
        {"seed", TR_OPT_INT, &cfg.seed, "random seed"},
        {"epochs", TR_OPT_INT, &cfg.epochs, "multiplies --steps (an 'epoch' here is --steps steps)"},
        {"threads", TR_OPT_INT, &cfg.threads, "threads; the 3 runs train in parallel, 0 = all cores"},
        {"limit-train", TR_OPT_INT, &cfg.limit_train, "use only the first N training images (0 = all)"},
        {"limit-test", TR_OPT_INT, &cfg.limit_test, "use only the first N test images (0 = all)"},
        {"labeled", TR_OPT_INT, &cfg.labeled, "labelled images (class-balanced); the rest are unlabelled"},
        {"steps", TR_OPT_INT, &cfg.steps, "SGD steps per run"},
        {"eval-every", TR_OPT_INT, &cfg.eval_every, "steps per table row"},
        {"batch", TR_OPT_INT, &cfg.batch, "labelled images per step"},
        {"mu", TR_OPT_INT, &cfg.mu, "unlabelled images per labelled image in a step"},
        {"lr", TR_OPT_FLOAT, &cfg.lr, "learning rate (SGD, momentum 0.9, cosine decay)"},
        {"threshold", TR_OPT_FLOAT, &cfg.threshold, "confidence threshold tau"},
        {"unlabeled-weight", TR_OPT_FLOAT, &cfg.unlabeled_weight, "weight of the pseudo-label loss"},
        {"ema-decay", TR_OPT_FLOAT, &cfg.ema_decay, "EMA teacher decay (Mean Teacher warm-up)"},
        {"flexmatch-warmup", TR_OPT_INT, &cfg.flexmatch_warmup, "FlexMatch threshold warm-up (1: unused samples count, as the paper)"},
        {"weak-student", TR_OPT_INT, &cfg.weak_student, "1: the student sees a second weak view instead of a strong one"},
        {"model", TR_OPT_STRING, &cfg.model, "model (convN-...-fcN)"},
        {"csv", TR_OPT_STRING, &cfg.csv, "also write every table row to this CSV file"},
    };
    int rc = tr_parse_options(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                              "Semi-supervised training with few labels: supervised only vs "
                              "EMA-teacher pseudo-labels vs FlexMatch thresholds (kdlib).");
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    if (cfg.batch < 1 || cfg.mu < 1 || cfg.batch * (1 + cfg.mu) > 4096 || cfg.steps < 1 ||
        cfg.epochs < 1 || cfg.labeled < 1) {
        fprintf(stderr, "error: batch, mu, steps, epochs and labeled must be >= 1\n");
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
    printf("kd-pseudolabel: kdlib %s, %lld train / %lld test images from %s, %d threads, seed %lld\n",
           kd_version_string(), (long long)train.n, (long long)test.n, cfg.data, threads,
           (long long)cfg.seed);

    int32_t *labeled = checked_malloc((size_t)train.n * sizeof *labeled);
    int32_t *unlabeled = checked_malloc((size_t)train.n * sizeof *unlabeled);
    tr_rng split_rng;
    tr_rng_seed(&split_rng, (uint64_t)cfg.seed, 100);
    context x = {.cfg = &cfg, .train = &train, .test = &test, .background = background,
                 .labeled = labeled, .unlabeled = unlabeled};
    x.labeled_n = tr_dataset_split_balanced(&train, cfg.labeled, &split_rng, labeled, unlabeled,
                                            &x.unlabeled_n);
    if (x.unlabeled_n < 1) {
        fprintf(stderr, "error: no unlabelled images left\n");
        return 2;
    }
    tr_run_parallel(NUM_RUNS, threads, run, &x, &log);

    printf("\n== kd-pseudolabel results (test accuracy on %lld images, %lld labelled, seed %lld, "
           "tau = %g)\n",
           (long long)test.n, (long long)x.labeled_n, (long long)cfg.seed, cfg.threshold);
    printf("%-14s %9s %12s %16s %16s\n", "run", "student", "EMA teacher", "pseudo-labels used",
           "their accuracy");
    for (int k = 0; k < NUM_RUNS; k++) {
        if (k == RUN_SUPERVISED)
            printf("%-14s %8.2f%% %11.2f%% %16s %16s\n", run_names[k], 100 * x.student_acc[k],
                   100 * x.teacher_acc[k], "-", "-");
        else
            printf("%-14s %8.2f%% %11.2f%% %15.1f%% %15.1f%%\n", run_names[k],
                   100 * x.student_acc[k], 100 * x.teacher_acc[k], 100 * x.used[k],
                   100 * x.correct[k]);
    }
    printf("total time %.0f s\n", tr_now() - t_start);
    free(labeled);
    free(unlabeled);
    tr_log_close(&log);
    tr_dataset_free(&train);
    tr_dataset_free(&test);
    return 0;
}
