/* kd-distill: knowledge distillation of a CNN teacher into a smaller student
 * on Fashion-MNIST, with kdlib's KL distillation and logit MSE losses.
 *
 * Runs: teacher A and teacher B on all labels; then the same student
 * architecture trained on a small labelled subset (1) alone with
 * cross-entropy, (2) with KL distillation from teacher A, (3) with logit MSE
 * to teacher A, (4) with KL distillation from the average of A's and B's
 * logits (kd_loss_bind_teachers).  Teacher logits are computed once, on the
 * student's training images (plus --unlabeled images the teachers label).
 * Ends with a table of the test accuracies. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kdlib/kdlib.h"
#include "blas_core.h"
#include "options.h"
#include "train.h"

typedef struct {
    const char *data, *teacher_spec, *teacher2_spec, *student_spec, *csv;
    int64_t seed, epochs, teacher2_epochs, threads, limit_train, limit_test, labeled, unlabeled,
        student_steps, batch, eval_every;
    double lr, mse_lr, temperature, alpha, mse_alpha;
    int augment;
} config;

/* What every student loss needs: the labels it may use (ignore index for
 * images whose label the student does not get) and the teachers' logits,
 * both indexed by dataset row. */
typedef struct {
    kd_loss *loss;
    int classes, num_teachers;
    const int32_t *labels;
    const float *teacher[2];
    int32_t *batch_labels;
    float *batch_teacher[2];
} loss_ctx;

static float loss_step(void *ctx, const int32_t *idx, int count, const float *logits,
                       float *dlogits)
{
    loss_ctx *c = ctx;
    const int C = c->classes;
    for (int i = 0; i < count; i++) {
        c->batch_labels[i] = c->labels[idx[i]];
        for (int k = 0; k < c->num_teachers; k++)
            memcpy(c->batch_teacher[k] + (int64_t)i * C, c->teacher[k] + (int64_t)idx[i] * C,
                   (size_t)C * sizeof(float));
    }
    const int64_t lds[2] = {C, C};
    kd_status st = kd_loss_bind_matrix(c->loss, KD_ARG_STUDENT, logits, C);
    if (st == KD_OK && c->num_teachers > 0)
        st = kd_loss_bind_teachers(c->loss, c->num_teachers, (const float *const *)c->batch_teacher,
                                   lds, NULL);
    if (st == KD_OK)
        st = kd_loss_bind_labels(c->loss, c->batch_labels);
    if (st == KD_OK)
        st = kd_loss_bind_output(c->loss, KD_ARG_GRAD_STUDENT, dlogits, C);
    float loss = 0.0f;
    if (st == KD_OK)
        st = kd_loss_forward_backward(c->loss, count, &loss);
    if (st != KD_OK) {
        fprintf(stderr, "kdlib: %s: %s\n", kd_status_string(st), kd_loss_last_error(c->loss));
        exit(1);
    }
    return loss;
}

static kd_loss *make_loss(kd_loss_kind kind, int classes, double temperature, double alpha)
{
    kd_loss *h = NULL;
    kd_status st = kd_loss_create(&h, kind, classes);
    if (st == KD_OK && kind == KD_LOSS_KL_DISTILL)
        st = kd_loss_set_float(h, KD_PARAM_TEMPERATURE, temperature);
    if (st == KD_OK && kind != KD_LOSS_CROSS_ENTROPY)
        st = kd_loss_set_float(h, KD_PARAM_ALPHA, alpha);
    if (st != KD_OK) {
        fprintf(stderr, "kdlib: %s: %s\n", kd_status_string(st), kd_loss_last_error(h));
        exit(1);
    }
    return h;
}

/* One training run: a teacher on all labels or a student on the pool. */
typedef struct {
    const char *run, *what, *spec;
    kd_loss_kind kind;
    int teachers; /* 0: cross-entropy, 1: teacher A, 2: average of A and B */
    uint64_t seed;
    const int32_t *pool;
    int64_t pool_n, steps, eval_every;
    double lr, alpha;
    const int32_t *labels;
    tr_model *model; /* the trained model */
    double accuracy;
} job;

typedef struct {
    const tr_dataset *train, *test;
    const config *cfg;
    float background;
    const float *teacher_logits[2];
    job *jobs;
} context;

static void *checked_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p) {
        fprintf(stderr, "error: out of memory\n");
        exit(1);
    }
    return p;
}

/* Train jobs[index] from scratch (a tr_run_fn). */
static void run_job(void *ctx, int index, tr_log *log)
{
    const context *x = ctx;
    job *j = &x->jobs[index];
    const config *cfg = x->cfg;
    const int C = x->train->classes;
    char err[256], desc[512];
    tr_model *m = tr_model_create(j->spec, x->train->h, x->train->w, C, 256, err, sizeof err);
    if (!m) {
        fprintf(stderr, "error: %s\n", err);
        exit(2);
    }
    tr_rng init;
    tr_rng_seed(&init, j->seed, 10);
    tr_model_init(m, &init);

    loss_ctx lc = {.classes = C,
                   .num_teachers = j->teachers,
                   .labels = j->labels,
                   .teacher = {x->teacher_logits[0], x->teacher_logits[1]}};
    lc.loss = make_loss(j->kind, C, cfg->temperature, j->alpha);
    lc.batch_labels = checked_malloc((size_t)cfg->batch * sizeof(int32_t));
    for (int k = 0; k < 2; k++)
        lc.batch_teacher[k] = checked_malloc((size_t)(cfg->batch * C) * sizeof(float));
    tr_supervised sup;
    tr_aug aug = cfg->augment ? TR_AUG_WEAK : TR_AUG_NONE;
    if (tr_supervised_init(&sup, x->train, j->pool, j->pool_n, (int)cfg->batch, aug, x->background,
                           j->seed, loss_step, &lc) != 0) {
        fprintf(stderr, "error: out of memory\n");
        exit(1);
    }
    tr_train_opts o = {.run = j->run,
                       .steps = j->steps,
                       .eval_every = j->eval_every,
                       .samples_per_epoch = j->pool_n,
                       .batch = (int)cfg->batch,
                       .lr = (float)j->lr,
                       .momentum = 0.9f,
                       .weight_decay = 5e-4f,
                       .cosine = 1};
    snprintf(desc, sizeof desc, "%s, %s", j->spec, j->what);
    tr_log_begin(log, j->run, desc);
    if (tr_train(m, &o, tr_supervised_step, &sup, x->test, log) != 0) {
        fprintf(stderr, "error: out of memory\n");
        exit(1);
    }
    double vloss;
    tr_evaluate(m, x->test, &vloss, &j->accuracy);
    tr_supervised_free(&sup);
    kd_loss_destroy(lc.loss);
    free(lc.batch_labels);
    free(lc.batch_teacher[0]);
    free(lc.batch_teacher[1]);
    j->model = m;
}

static double test_accuracy_of_logits(const float *logits, const tr_dataset *test)
{
    int64_t correct = 0;
    for (int64_t i = 0; i < test->n; i++)
        correct += tr_argmax(logits + i * test->classes, test->classes) == test->y[i];
    return test->n ? (double)correct / (double)test->n : 0.0;
}

int main(int argc, char **argv)
{
    tr_blas_core(argc, argv, "kd-distill");
    config cfg = {.data = "/usr/share/datasets/fashion-mnist",
                  .teacher_spec = "conv32-conv64-fc128",
                  .teacher2_spec = "",
                  .student_spec = "conv16-conv32-fc64",
                  .seed = 1,
                  .epochs = 3,
                  .teacher2_epochs = 3,
                  .threads = 0,
                  .labeled = 1000,
                  .unlabeled = 0,
                  .student_steps = 1500,
                  .batch = 64,
                  .eval_every = 500,
                  .lr = 0.02,
                  .mse_lr = 0.005,
                  .temperature = 4.0,
                  .alpha = 0.9,
                  .mse_alpha = 0.9};
    const tr_option opts[] = {
        {"data", TR_OPT_STRING, &cfg.data, "directory with the IDX files (Fashion-MNIST or MNIST)"},
        {"seed", TR_OPT_INT, &cfg.seed, "random seed"},
        {"epochs", TR_OPT_INT, &cfg.epochs, "epochs of teacher A on all labels"},
        {"teacher2-epochs", TR_OPT_INT, &cfg.teacher2_epochs, "epochs of teacher B"},
        {"threads", TR_OPT_INT, &cfg.threads, "threads (OpenBLAS and OpenMP), 0 = all cores"},
        {"limit-train", TR_OPT_INT, &cfg.limit_train,
         "use only the first N training images (0 = all)"},
        {"limit-test", TR_OPT_INT, &cfg.limit_test, "use only the first N test images (0 = all)"},
        {"labeled", TR_OPT_INT, &cfg.labeled, "labelled images of the student (class-balanced)"},
        {"unlabeled", TR_OPT_INT, &cfg.unlabeled,
         "extra unlabelled images the teachers label for the distilled students"},
        {"student-steps", TR_OPT_INT, &cfg.student_steps, "SGD steps of each student run"},
        {"eval-every", TR_OPT_INT, &cfg.eval_every, "student steps per table row"},
        {"batch", TR_OPT_INT, &cfg.batch, "batch size"},
        {"lr", TR_OPT_FLOAT, &cfg.lr, "learning rate (SGD, momentum 0.9, cosine decay)"},
        {"mse-lr", TR_OPT_FLOAT, &cfg.mse_lr,
         "learning rate of the logit-MSE student (regression on logits needs a smaller one)"},
        {"temperature", TR_OPT_FLOAT, &cfg.temperature, "distillation temperature T"},
        {"alpha", TR_OPT_FLOAT, &cfg.alpha, "KL: soft weight alpha, hard-label weight 1 - alpha"},
        {"mse-alpha", TR_OPT_FLOAT, &cfg.mse_alpha, "logit MSE: soft weight, hard weight 1 - it"},
        {"teacher", TR_OPT_STRING, &cfg.teacher_spec, "teacher A model"},
        {"teacher2", TR_OPT_STRING, &cfg.teacher2_spec,
         "teacher B model (default: teacher A's, other seed)"},
        {"student", TR_OPT_STRING, &cfg.student_spec, "student model"},
        {"augment", TR_OPT_FLAG, &cfg.augment, "weak augmentation (shift, flip) in every run"},
        {"csv", TR_OPT_STRING, &cfg.csv, "also write every table row to this CSV file"},
    };
    int rc = tr_parse_options(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                              "Distil a CNN teacher into a smaller student with few labels "
                              "(kdlib KL distillation and logit MSE).");
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    if (cfg.batch < 1 || cfg.batch > 256 || cfg.labeled < 1 || cfg.student_steps < 1 ||
        cfg.epochs < 1 || cfg.teacher2_epochs < 1 || cfg.unlabeled < 0) {
        fprintf(stderr, "error: batch must be in [1, 256], labeled, epochs and steps >= 1\n");
        return 2;
    }
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
    const int C = train.classes;
    printf("kd-distill: kdlib %s, %lld train / %lld test images from %s, %d threads, seed %lld\n",
           kd_version_string(), (long long)train.n, (long long)test.n, cfg.data, threads,
           (long long)cfg.seed);

    /* The student's labelled images, and the unlabelled ones the teachers label. */
    int32_t *pool = checked_malloc((size_t)train.n * sizeof *pool);
    int32_t *rest = checked_malloc((size_t)train.n * sizeof *rest);
    int32_t *all = checked_malloc((size_t)train.n * sizeof *all);
    int32_t *known = checked_malloc((size_t)train.n * sizeof *known);
    float *logits[2], *test_logits[3];
    for (int k = 0; k < 2; k++)
        logits[k] = calloc((size_t)(train.n * C), sizeof(float));
    for (int k = 0; k < 3; k++)
        test_logits[k] = checked_malloc((size_t)(test.n * C) * sizeof(float));
    float *tmp = checked_malloc((size_t)(train.n * C) * sizeof *tmp);
    if (!logits[0] || !logits[1]) {
        fprintf(stderr, "error: out of memory\n");
        return 1;
    }
    tr_rng split_rng;
    tr_rng_seed(&split_rng, (uint64_t)cfg.seed, 100);
    int64_t rest_n = 0;
    int64_t labeled_n =
        tr_dataset_split_balanced(&train, cfg.labeled, &split_rng, pool, rest, &rest_n);
    int64_t unlabeled_n = cfg.unlabeled < rest_n ? cfg.unlabeled : rest_n;
    int64_t pool_n = labeled_n + unlabeled_n;
    for (int64_t i = 0; i < train.n; i++) {
        all[i] = (int32_t)i;
        known[i] = -100; /* kdlib's default ignore index: no label for the student */
    }
    for (int64_t i = 0; i < labeled_n; i++)
        known[pool[i]] = train.y[pool[i]];
    memcpy(pool + labeled_n, rest, (size_t)unlabeled_n * sizeof *pool); /* labelled first */

    const uint64_t seed = (uint64_t)cfg.seed;
    const int64_t epoch_steps = (train.n + cfg.batch - 1) / cfg.batch;
    char what[4][256], teacher_what[2][128];
    const char *teacher2 = *cfg.teacher2_spec ? cfg.teacher2_spec : cfg.teacher_spec;
    snprintf(teacher_what[0], sizeof teacher_what[0], "%lld epochs on all %lld labels",
             (long long)cfg.epochs, (long long)train.n);
    snprintf(teacher_what[1], sizeof teacher_what[1], "%lld epochs on all %lld labels",
             (long long)cfg.teacher2_epochs, (long long)train.n);
    job jobs[6] = {
        {"teacher-A", teacher_what[0], cfg.teacher_spec, KD_LOSS_CROSS_ENTROPY, 0, seed * 7 + 1,
         all, train.n, cfg.epochs * epoch_steps, epoch_steps, cfg.lr, 0, train.y, NULL, 0},
        {"teacher-B", teacher_what[1], teacher2, KD_LOSS_CROSS_ENTROPY, 0, seed * 7 + 2, all,
         train.n, cfg.teacher2_epochs * epoch_steps, epoch_steps, cfg.lr, 0, train.y, NULL, 0},
        /* Same seed for every student: same initial weights and batch order. */
        {"student-alone", "cross-entropy", cfg.student_spec, KD_LOSS_CROSS_ENTROPY, 0, seed * 7 + 3,
         pool, labeled_n, cfg.student_steps, cfg.eval_every, cfg.lr, 0, known, NULL, 0},
        {"student-kl", "KL distillation from teacher A", cfg.student_spec, KD_LOSS_KL_DISTILL, 1,
         seed * 7 + 3, pool, pool_n, cfg.student_steps, cfg.eval_every, cfg.lr, cfg.alpha, known,
         NULL, 0},
        {"student-mse", "logit MSE to teacher A", cfg.student_spec, KD_LOSS_LOGIT_MSE, 1,
         seed * 7 + 3, pool, pool_n, cfg.student_steps, cfg.eval_every, cfg.mse_lr, cfg.mse_alpha,
         known, NULL, 0},
        {"student-kl-AB", "KL distillation from the average of teachers A and B", cfg.student_spec,
         KD_LOSS_KL_DISTILL, 2, seed * 7 + 3, pool, pool_n, cfg.student_steps, cfg.eval_every,
         cfg.lr, cfg.alpha, known, NULL, 0},
    };
    for (int s = 2; s < 6; s++) {
        snprintf(what[s - 2], sizeof what[0],
                 "%s, %lld steps on %lld labelled + %lld unlabelled images", jobs[s].what,
                 (long long)cfg.student_steps, (long long)labeled_n,
                 (long long)(jobs[s].teachers ? unlabeled_n : 0));
        jobs[s].what = what[s - 2];
    }
    context x = {.train = &train,
                 .test = &test,
                 .cfg = &cfg,
                 .background = background,
                 .teacher_logits = {logits[0], logits[1]},
                 .jobs = jobs};

    /* Teachers (in parallel when there are 2 threads), then their logits on
     * the students' training images, computed once. */
    tr_run_parallel(2, threads, run_job, &x, &log);
    for (int k = 0; k < 2; k++) {
        tr_predict(jobs[k].model, &train, pool, pool_n, tmp);
        for (int64_t i = 0; i < pool_n; i++)
            memcpy(logits[k] + (int64_t)pool[i] * C, tmp + i * C, (size_t)C * sizeof *tmp);
        tr_predict(jobs[k].model, &test, NULL, test.n, test_logits[k]);
    }
    for (int64_t i = 0; i < test.n * C; i++)
        test_logits[2][i] = 0.5f * (test_logits[0][i] + test_logits[1][i]);
    double acc_ab = test_accuracy_of_logits(test_logits[2], &test);

    /* Students. */
    x.jobs = jobs + 2;
    tr_run_parallel(4, threads, run_job, &x, &log);

    printf(
        "\n== kd-distill results (test accuracy on %lld images, seed %lld, T = %g, alpha = %g)\n",
        (long long)test.n, (long long)cfg.seed, cfg.temperature, cfg.alpha);
    printf("%-40s %-22s %8s %9s\n", "run", "model", "params", "accuracy");
    for (int s = 0; s < 6; s++) {
        char name[64];
        if (s < 2)
            snprintf(name, sizeof name, "%s (%lld labels)", jobs[s].run, (long long)train.n);
        else
            snprintf(name, sizeof name, "%s (%lld labels%s)", jobs[s].run, (long long)labeled_n,
                     jobs[s].teachers && unlabeled_n ? " + unlabelled" : "");
        printf("%-40s %-22s %8lld %8.2f%%\n", name, jobs[s].spec,
               (long long)jobs[s].model->num_params, 100 * jobs[s].accuracy);
        if (s == 1)
            printf("%-40s %-22s %8s %8.2f%%\n", "average of A and B logits", "", "", 100 * acc_ab);
    }
    printf("distilled (KL from A) minus alone: %+.2f points; total time %.0f s\n",
           100 * (jobs[3].accuracy - jobs[2].accuracy), tr_now() - t_start);

    for (int s = 0; s < 6; s++)
        tr_model_destroy(jobs[s].model);
    free(pool);
    free(rest);
    free(all);
    free(known);
    for (int k = 0; k < 2; k++)
        free(logits[k]);
    for (int k = 0; k < 3; k++)
        free(test_logits[k]);
    free(tmp);
    tr_log_close(&log);
    tr_dataset_free(&train);
    tr_dataset_free(&test);
    return 0;
}
