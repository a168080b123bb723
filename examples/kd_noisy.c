/* kd-noisy: find and fix noisy labels with kdlib's label tools, on the
 * setting of issue 19's PyTorch + cleanlab reference.
 *
 * For each noise level (25% and 40% by default): flip that share of the first
 * 20,000 training labels to another class (symmetric noise); train k = 4
 * models on k-1 folds each (10 epochs) for out-of-fold probabilities (by
 * default averaged over 10 test-time views of each image: itself, its mirror,
 * and both shifted by one pixel up, down, left and right); run
 * every cleanlab filter (kd_cleanlab_find_label_issues) and the
 * self-confidence top-K and report their precision and recall against the
 * known flips; compare cleanlab's noise-matrix estimate
 * (kd_cleanlab_estimate_py_and_noise_matrices) with the true one; then retrain
 * (10 epochs) on the noisy hard labels, on soft labels
 * 0.7 onehot(given) + 0.3 onehot(predicted) (kd_soft_labels), on soft labels
 * for the suspects only (kd_soft_labels_selective), without the suspects, and
 * with the suspects relabelled to the prediction (suspects: cleanlab's default
 * filter, prune_by_noise_rate), next to the true labels (the ceiling, trained
 * once).  Writes a PNG grid of the 25 most confident suspects of the first
 * noise level with their given and predicted class names. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "image.h"
#include "kdlib/kdlib.h"
#include "blas_core.h"
#include "options.h"
#include "train.h"

typedef struct {
    const char *data, *model, *png, *csv, *noise;
    int64_t seed, epochs, final_epochs, threads, limit_train, limit_test, subset, folds, batch;
    int64_t tta, nesterov;
    double lr, label_weight, ema_decay;
} config;

static void *checked_malloc(size_t size)
{
    void *p = malloc(size ? size : 1);
    if (!p) {
        fprintf(stderr, "error: out of memory\n");
        exit(1);
    }
    return p;
}

static void die_kd(kd_status st, const char *what, const char *message)
{
    if (st != KD_OK) {
        fprintf(stderr, "kdlib: %s: %s: %s\n", what, kd_status_string(st), message);
        exit(1);
    }
}

/* A training job: a model on `pool` with hard labels (`labels`, by dataset
 * row) or soft targets (`targets`, n x C by dataset row). */
typedef struct {
    char run[48];
    const int32_t *pool;
    int64_t pool_n, epochs;
    const int32_t *labels;
    const float *targets;
    const int32_t *predict; /* rows whose probabilities to keep (out-of-fold) */
    int64_t predict_n;
    float *probs; /* predict_n x C softmax outputs */
    double accuracy;
} job;

typedef struct {
    const config *cfg;
    const tr_dataset *train, *test;
    float background;
    job *jobs;
} context;

typedef struct {
    kd_loss *loss;
    int C;
    const int32_t *labels;
    const float *targets;
    int32_t *batch_labels;
    float *batch_targets;
} loss_ctx;

static float loss_step(void *ctx, const int32_t *idx, int count, const float *logits,
                       float *dlogits)
{
    loss_ctx *c = ctx;
    for (int i = 0; i < count; i++) {
        if (c->targets)
            memcpy(c->batch_targets + (int64_t)i * c->C, c->targets + (int64_t)idx[i] * c->C,
                   (size_t)c->C * sizeof(float));
        else
            c->batch_labels[i] = c->labels[idx[i]];
    }
    if (c->targets)
        kd_loss_bind_matrix(c->loss, KD_ARG_TARGET, c->batch_targets, c->C);
    else
        kd_loss_bind_labels(c->loss, c->batch_labels);
    kd_loss_bind_matrix(c->loss, KD_ARG_STUDENT, logits, c->C);
    kd_loss_bind_output(c->loss, KD_ARG_GRAD_STUDENT, dlogits, c->C);
    float loss = 0.0f;
    die_kd(kd_loss_forward_backward(c->loss, count, &loss), "loss", kd_loss_last_error(c->loss));
    return loss;
}

static void softmax_rows(float *z, int64_t n, int C)
{
    for (int64_t i = 0; i < n; i++) {
        float *r = z + i * C, m = r[0], s = 0.0f;
        for (int c = 1; c < C; c++)
            m = r[c] > m ? r[c] : m;
        for (int c = 0; c < C; c++)
            s += r[c] = expf(r[c] - m);
        for (int c = 0; c < C; c++)
            r[c] /= s;
    }
}

/* The test-time views of --tta: (flip, dy, dx); --tta 0 uses the first,
 * 1 the first 2, 2 all 10. */
static const int tta_views[10][3] = {{0, 0, 0},  {1, 0, 0}, {0, 1, 0}, {1, 1, 0},  {0, -1, 0},
                                     {1, -1, 0}, {0, 0, 1}, {1, 0, 1}, {0, 0, -1}, {1, 0, -1}};

static int tta_view_count(int64_t tta) { return tta >= 2 ? 10 : tta == 1 ? 2 : 1; }

/* The out-of-fold probabilities of j: the mean over the --tta views of each
 * held-out image of the model's softmax. */
static void predict_job(const context *x, tr_model *m, job *j, int C)
{
    const tr_dataset *d = x->train;
    const int64_t n = j->predict_n, size = (int64_t)d->h * d->w;
    const int views = tta_view_count(x->cfg->tta);
    tr_dataset held = *d, view = *d;
    held.n = view.n = n;
    held.x = checked_malloc((size_t)(n * size) * sizeof(float));
    view.x = checked_malloc((size_t)(n * size) * sizeof(float));
    float *probs = checked_malloc((size_t)(n * C) * sizeof *probs);
    tr_dataset_gather(d, j->predict, (int)n, held.x);
    memset(j->probs, 0, (size_t)(n * C) * sizeof *j->probs);
    for (int v = 0; v < views; v++) {
        memcpy(view.x, held.x, (size_t)(n * size) * sizeof(float));
        for (int64_t i = 0; i < n; i++)
            tr_shift_flip(view.x + i * size, d->h, d->w, tta_views[v][1], tta_views[v][2],
                          tta_views[v][0], x->background);
        tr_predict(m, &view, NULL, n, probs);
        softmax_rows(probs, n, C);
        for (int64_t i = 0; i < n * C; i++)
            j->probs[i] += probs[i] / (float)views;
    }
    free(held.x);
    free(view.x);
    free(probs);
}

static void run_job(void *ctx, int index, tr_log *log)
{
    const context *x = ctx;
    job *j = &x->jobs[index];
    const config *cfg = x->cfg;
    const int C = x->train->classes;
    char err[256];
    tr_model *m = tr_model_create(cfg->model, x->train->h, x->train->w, C, 256, err, sizeof err);
    if (!m) {
        fprintf(stderr, "error: %s\n", err);
        exit(2);
    }
    tr_rng init;
    tr_rng_seed(&init, (uint64_t)cfg->seed, 10);
    tr_model_init(m, &init);
    loss_ctx lc = {.C = C, .labels = j->labels, .targets = j->targets};
    die_kd(kd_loss_create(&lc.loss, KD_LOSS_CROSS_ENTROPY, C), "create", "");
    lc.batch_labels = checked_malloc((size_t)cfg->batch * sizeof(int32_t));
    lc.batch_targets = checked_malloc((size_t)(cfg->batch * C) * sizeof(float));
    tr_supervised sup;
    if (tr_supervised_init(&sup, x->train, j->pool, j->pool_n, (int)cfg->batch, TR_AUG_WEAK,
                           x->background, (uint64_t)cfg->seed, loss_step, &lc) != 0)
        exit(1);
    int64_t epoch_steps = (j->pool_n + cfg->batch - 1) / cfg->batch;
    tr_train_opts o = {.run = j->run,
                       .steps = j->epochs * epoch_steps,
                       .eval_every = epoch_steps,
                       .samples_per_epoch = j->pool_n,
                       .batch = (int)cfg->batch,
                       .lr = (float)cfg->lr,
                       .momentum = 0.9f,
                       .weight_decay = 5e-4f,
                       .cosine = 1,
                       .nesterov = (int)cfg->nesterov};
    kd_ema *ema = NULL;
    if (cfg->ema_decay > 0.0) {
        ema = tr_ema_create(m, cfg->ema_decay);
        o.after_update = tr_ema_update;
        o.hook_ctx = ema;
    }
    char desc[160];
    snprintf(desc, sizeof desc, "%s on %lld images, %s", cfg->model, (long long)j->pool_n,
             j->targets ? "soft labels" : "hard labels");
    tr_log_begin(log, j->run, desc);
    /* Test accuracy once, at the end (the table rows show the training loss). */
    if (tr_train(m, &o, tr_supervised_step, &sup, NULL, log) != 0)
        exit(1);
    if (ema) { /* evaluate and predict with the EMA of the weights */
        kd_ema_copy_to_flat(ema, m->params);
        kd_ema_destroy(ema);
    }
    double vloss;
    tr_evaluate(m, x->test, &vloss, &j->accuracy);
    printf("  %s: test accuracy %.2f%%\n", j->run, 100 * j->accuracy);
    if (j->predict_n > 0)
        predict_job(x, m, j, C);
    tr_supervised_free(&sup);
    kd_loss_destroy(lc.loss);
    free(lc.batch_labels);
    free(lc.batch_targets);
    tr_model_destroy(m);
}

/* The PNG grid: 25 tiles, the image 2x, the given and predicted classes
 * below; a red frame when the label was really flipped, green otherwise. */
static int write_grid(const char *path, const tr_dataset *d, const int64_t *rows, int count,
                      const int32_t *given, const int32_t *predicted, const uint8_t *flipped,
                      int fashion)
{
    enum { COLS = 5, TILE_W = 92, TILE_H = 84, SCALE = 2 };
    int nrows = (count + COLS - 1) / COLS;
    tr_image im;
    if (tr_image_init(&im, COLS * TILE_W, 16 + (nrows > 0 ? nrows : 1) * TILE_H, 255) != 0)
        return -1;
    tr_image_text(&im, 4, 4, "SUSPECTED LABEL ISSUES: GIVEN / PREDICTED", 0, 0, 0);
    float lo = 1e30f, hi = -1e30f;
    for (int64_t i = 0; i < (int64_t)d->h * d->w * d->n; i++) {
        lo = d->x[i] < lo ? d->x[i] : lo;
        hi = d->x[i] > hi ? d->x[i] : hi;
    }
    for (int k = 0; k < count; k++) {
        int x0 = (k % COLS) * TILE_W, y0 = 16 + (k / COLS) * TILE_H;
        int64_t r = rows[k];
        uint8_t red = flipped[r] ? 200 : 0, green = flipped[r] ? 0 : 160;
        int ix = x0 + (TILE_W - d->w * SCALE) / 2;
        tr_image_fill(&im, ix - 2, y0 + 2, d->w * SCALE + 4, d->h * SCALE + 4, red, green, 0);
        tr_image_draw_grey(&im, ix, y0 + 4, d->x + r * d->h * d->w, d->h, d->w, lo, hi, SCALE);
        char line[32];
        snprintf(line, sizeof line, "G:%s", tr_class_name(fashion, given[r]));
        tr_image_text(&im, x0 + 4, y0 + 64, line, 0, 0, 0);
        snprintf(line, sizeof line, "P:%s", tr_class_name(fashion, predicted[r]));
        tr_image_text(&im, x0 + 4, y0 + 74, line, 0, 0, 160);
    }
    int rc = tr_image_write_png(&im, path);
    tr_image_free(&im);
    return rc;
}

static const char *const filter_names[] = {
    "prune_by_noise_rate", "prune_by_class",      "both",
    "confident_learning",  "predicted_neq_given", "low_normalized_margin",
    "low_self_confidence"};
enum { NUM_FILTERS = 7, NUM_RETRAIN = 5 };
static const char *const retrain_names[NUM_RETRAIN] = {
    "noisy hard labels", "soft labels (all rows)", "soft labels (suspects only)",
    "suspects dropped", "suspects relabelled"};
static const char *const retrain_runs[NUM_RETRAIN] = {"hard", "soft", "soft-suspects", "dropped",
                                                      "relabelled"};

typedef struct {
    double noise, oof_accuracy, topk_precision, nm_max_diff;
    int64_t flipped, issues[NUM_FILTERS], hits[NUM_FILTERS], kd_suspects, kd_hits;
    double retrain[NUM_RETRAIN];
} level_result;

static double ratio(int64_t a, int64_t b) { return b ? (double)a / (double)b : 0.0; }

int main(int argc, char **argv)
{
    tr_blas_core(argc, argv, "kd-noisy");
    config cfg = {.data = "/usr/share/datasets/fashion-mnist",
                  .model = "conv16-conv32-fc64",
                  .png = "kd_noisy_suspects.png",
                  .noise = "0.25,0.4",
                  .seed = 1,
                  .epochs = 10,
                  .final_epochs = 10,
                  .threads = 0,
                  .subset = 20000,
                  .folds = 4,
                  .batch = 64,
                  .lr = 0.03,
                  .label_weight = 0.7,
                  .tta = 2};
    int64_t true_labels = 1;
    const char *retrain = "hard,soft,soft-suspects,dropped,relabelled";
    const tr_option opts[] = {
        {"data", TR_OPT_STRING, &cfg.data, "directory with the IDX files (Fashion-MNIST or MNIST)"},
        {"seed", TR_OPT_INT, &cfg.seed, "random seed (noise, folds, training)"},
        {"epochs", TR_OPT_INT, &cfg.epochs, "epochs of each fold model"},
        {"final-epochs", TR_OPT_INT, &cfg.final_epochs, "epochs of the retrained models"},
        {"threads", TR_OPT_INT, &cfg.threads,
         "threads; independent runs train in parallel, 0 = all cores"},
        {"limit-train", TR_OPT_INT, &cfg.limit_train,
         "use only the first N training images (0 = all)"},
        {"limit-test", TR_OPT_INT, &cfg.limit_test, "use only the first N test images (0 = all)"},
        {"subset", TR_OPT_INT, &cfg.subset, "training images used (the first N; 0 = all)"},
        {"folds", TR_OPT_INT, &cfg.folds, "k of the k-fold out-of-fold predictions"},
        {"noise", TR_OPT_STRING, &cfg.noise, "comma-separated shares of flipped labels"},
        {"batch", TR_OPT_INT, &cfg.batch, "batch size"},
        {"lr", TR_OPT_FLOAT, &cfg.lr, "learning rate (SGD, momentum 0.9, cosine decay)"},
        {"tta", TR_OPT_INT, &cfg.tta,
         "out-of-fold probabilities averaged over views: 0 = the image only, 1 = and its "
         "mirror image, 2 = and both shifted by 1 pixel in 4 directions (10 views)"},
        {"nesterov", TR_OPT_INT, &cfg.nesterov, "1: Nesterov momentum"},
        {"ema-decay", TR_OPT_FLOAT, &cfg.ema_decay,
         "decay of an EMA of the weights that is evaluated and predicts (0 = off)"},
        {"label-weight", TR_OPT_FLOAT, &cfg.label_weight,
         "weight w of the given label in the soft labels"},
        {"retrain", TR_OPT_STRING, &retrain,
         "comma-separated retraining runs: hard, soft, soft-suspects, dropped, relabelled"},
        {"true-labels", TR_OPT_INT, &true_labels,
         "1: also train once on the true labels (the ceiling)"},
        {"model", TR_OPT_STRING, &cfg.model, "model (convN-...-fcN)"},
        {"png", TR_OPT_STRING, &cfg.png, "PNG grid of the 25 most confident suspects ('' = none)"},
        {"csv", TR_OPT_STRING, &cfg.csv, "also write every table row to this CSV file"},
    };
    int rc = tr_parse_options(argc, argv, opts, (int)(sizeof opts / sizeof opts[0]),
                              "Inject label noise, find it with out-of-fold predictions and "
                              "cleanlab's filters, retrain with hard, soft, dropped and "
                              "relabelled suspects (kdlib label tools).");
    if (rc != 0)
        return rc > 0 ? 0 : 2;
    if (cfg.folds < 2 || cfg.folds > 20 || cfg.batch < 1 || cfg.batch > 256 || cfg.epochs < 1 ||
        cfg.final_epochs < 1) {
        fprintf(stderr, "error: folds in [2, 20], batch in [1, 256], epochs >= 1\n");
        return 2;
    }
    int run_it[NUM_RETRAIN] = {0};
    for (const char *p = retrain; *p;) {
        size_t len = strcspn(p, ",");
        int m = 0;
        while (m < NUM_RETRAIN &&
               (strlen(retrain_runs[m]) != len || strncmp(p, retrain_runs[m], len) != 0))
            m++;
        if (m == NUM_RETRAIN) {
            fprintf(stderr,
                    "error: --retrain '%s': expected names among hard, soft, "
                    "soft-suspects, dropped, relabelled\n",
                    retrain);
            return 2;
        }
        run_it[m] = 1;
        p += len + (p[len] == ',');
    }
    double levels[8];
    int num_levels = 0;
    for (const char *p = cfg.noise; *p && num_levels < 8;) {
        char *end;
        levels[num_levels] = strtod(p, &end);
        if (end == p || levels[num_levels] < 0 || levels[num_levels] >= 1) {
            fprintf(stderr, "error: --noise '%s': expected shares in [0, 1) separated by commas\n",
                    cfg.noise);
            return 2;
        }
        num_levels++;
        p = *end == ',' ? end + 1 : end;
    }
    if (cfg.tta < 0 || cfg.tta > 2) {
        fprintf(stderr, "error: --tta %lld: expected 0, 1 or 2\n", (long long)cfg.tta);
        return 2;
    }
    if (cfg.ema_decay < 0.0 || cfg.ema_decay >= 1.0) {
        fprintf(stderr, "error: --ema-decay %g: expected a decay in [0, 1) (0 = off)\n",
                cfg.ema_decay);
        return 2;
    }
    double t_start = tr_now();
    int threads = tr_set_threads((int)cfg.threads);
    tr_dataset train, test;
    float background;
    if (tr_dataset_load_pair(cfg.data, cfg.limit_train, cfg.limit_test, &train, &test,
                             &background) != 0)
        return 1;
    if (cfg.subset > 0 && cfg.subset < train.n)
        train.n = cfg.subset;
    tr_log log;
    if (tr_log_open(&log, cfg.csv) != 0)
        return 1;
    const int C = train.classes;
    const int64_t n = train.n;
    const int fashion = tr_dataset_is_fashion(cfg.data);
    const int num_views = tta_view_count(cfg.tta);
    printf("kd-noisy: kdlib %s, %lld train / %lld test images from %s, %d threads, seed %lld, "
           "%d test-time view%s per out-of-fold prediction\n",
           kd_version_string(), (long long)n, (long long)test.n, cfg.data, threads,
           (long long)cfg.seed, num_views, num_views > 1 ? "s" : "");

    int32_t *noisy = checked_malloc((size_t)n * sizeof *noisy);
    int32_t *relabelled = checked_malloc((size_t)n * sizeof *relabelled);
    int32_t *order = checked_malloc((size_t)n * sizeof *order);
    int32_t *kept = checked_malloc((size_t)n * sizeof *kept);
    int32_t *pred = checked_malloc((size_t)n * sizeof *pred);
    uint8_t *flipped = checked_malloc((size_t)n);
    uint8_t *suspect = checked_malloc((size_t)n);
    uint8_t *mask = checked_malloc((size_t)n);
    float *probs = checked_malloc((size_t)(n * C) * sizeof *probs);
    float *soft = checked_malloc((size_t)(n * C) * sizeof *soft);
    float *soft_sel = checked_malloc((size_t)(n * C) * sizeof *soft_sel);
    int64_t *ranking = checked_malloc((size_t)n * sizeof *ranking);
    int32_t *fold_pool = checked_malloc((size_t)(cfg.folds * n) * sizeof *fold_pool);
    double *nm_est = checked_malloc((size_t)(C * C) * sizeof *nm_est);
    double *nm_true = checked_malloc((size_t)(C * C) * sizeof *nm_true);
    job *jobs = checked_malloc((size_t)(cfg.folds + NUM_RETRAIN + 1) * sizeof *jobs);
    level_result results[8];
    double true_accuracy = -1.0;
    char err[512];

    for (int level = 0; level < num_levels; level++) {
        level_result *res = &results[level];
        memset(res, 0, sizeof *res);
        res->noise = levels[level];
        /* Symmetric noise: a random share of the labels moves to another class. */
        tr_rng r;
        tr_rng_seed(&r, (uint64_t)cfg.seed, 200 + (uint64_t)level);
        int64_t num_flipped = 0;
        for (int64_t i = 0; i < n; i++) {
            noisy[i] = train.y[i];
            flipped[i] = 0;
            order[i] = (int32_t)i;
        }
        tr_rng_shuffle(&r, order, n);
        for (int64_t i = 0; i < (int64_t)llround(levels[level] * (double)n); i++) {
            int32_t k = order[i];
            noisy[k] = (int32_t)((train.y[k] + 1 + tr_rng_below(&r, C - 1)) % C);
            flipped[k] = 1;
            num_flipped++;
        }
        tr_rng_shuffle(&r, order, n); /* the folds do not follow the flips */
        res->flipped = num_flipped;

        /* k-fold out-of-fold probabilities: fold f holds order[f], order[f + k], ... */
        const int k = (int)cfg.folds;
        context x = {
            .cfg = &cfg, .train = &train, .test = &test, .background = background, .jobs = jobs};
        for (int f = 0; f < k; f++) {
            job *j = &jobs[f];
            memset(j, 0, sizeof *j);
            snprintf(j->run, sizeof j->run, "noise%.0f%%-fold%d", 100 * levels[level], f + 1);
            int32_t *train_rows = fold_pool + (int64_t)f * n;
            int32_t *held = train_rows + n - (n + k - 1 - f) / k; /* the fold's rows at the end */
            int64_t nt = 0, nh = 0;
            for (int64_t i = 0; i < n; i++) {
                if (i % k == f)
                    held[nh++] = order[i];
                else
                    train_rows[nt++] = order[i];
            }
            j->pool = train_rows;
            j->pool_n = nt;
            j->epochs = cfg.epochs;
            j->labels = noisy;
            j->predict = held;
            j->predict_n = nh;
            j->probs = checked_malloc((size_t)(nh * C) * sizeof(float));
        }
        tr_run_parallel(k, threads, run_job, &x, &log);
        for (int f = 0; f < k; f++) {
            for (int64_t i = 0; i < jobs[f].predict_n; i++)
                memcpy(probs + (int64_t)jobs[f].predict[i] * C, jobs[f].probs + i * C,
                       (size_t)C * sizeof(float));
            free(jobs[f].probs);
        }
        int64_t oof_correct = 0;
        for (int64_t i = 0; i < n; i++) { /* the predicted class: argmax of p */
            pred[i] = tr_argmax(probs + i * C, C);
            oof_correct += pred[i] == train.y[i];
        }
        res->oof_accuracy = ratio(oof_correct, n);

        /* Every cleanlab filter, against the known flips; suspects: the default filter. */
        for (int f = 0; f < NUM_FILTERS; f++) {
            die_kd(kd_cleanlab_find_label_issues(n, C, probs, C, noisy,
                                                 KD_LABELS_DEFAULT_IGNORE_INDEX, f, 1.0, NULL, 1,
                                                 KD_CLEANLAB_RANK_NONE, 0, f ? mask : suspect, NULL,
                                                 &res->issues[f], err, sizeof err),
                   filter_names[f], err);
            for (int64_t i = 0; i < n; i++)
                res->hits[f] += (f ? mask : suspect)[i] && flipped[i];
        }
        /* kdlib's own rule (the paper's off-diagonal confident learning). */
        die_kd(kd_find_label_issues(n, C, probs, C, noisy, KD_LABELS_DEFAULT_IGNORE_INDEX, NULL,
                                    NULL, mask, &res->kd_suspects, err, sizeof err),
               "label issues", err);
        for (int64_t i = 0; i < n; i++)
            res->kd_hits += mask[i] && flipped[i];
        /* Self-confidence ranking: precision of the K = flipped lowest. */
        die_kd(kd_label_quality(n, C, probs, C, noisy, KD_LABELS_DEFAULT_IGNORE_INDEX,
                                KD_LABEL_SCORE_SELF_CONFIDENCE, NULL, ranking, NULL, err,
                                sizeof err),
               "label quality", err);
        int64_t hits_top_k = 0;
        for (int64_t i = 0; i < num_flipped; i++)
            hits_top_k += flipped[ranking[i]];
        res->topk_precision = ratio(hits_top_k, num_flipped);

        /* Noise matrix P(given i | true j): cleanlab's estimate and the truth. */
        die_kd(kd_cleanlab_estimate_py_and_noise_matrices(
                   n, C, probs, C, noisy, KD_LABELS_DEFAULT_IGNORE_INDEX,
                   KD_CLEANLAB_CALIBRATE | KD_CLEANLAB_CONVERGE, NULL, nm_est, NULL, NULL, err,
                   sizeof err),
               "noise matrix", err);
        for (int i = 0; i < C * C; i++)
            nm_true[i] = 0.0;
        for (int64_t i = 0; i < n; i++)
            nm_true[noisy[i] * C + train.y[i]] += 1.0;
        for (int j = 0; j < C; j++) {
            double col = 0.0;
            for (int i = 0; i < C; i++)
                col += nm_true[i * C + j];
            for (int i = 0; i < C; i++)
                nm_true[i * C + j] = col > 0 ? nm_true[i * C + j] / col : 0.0;
        }
        for (int i = 0; i < C * C; i++)
            res->nm_max_diff = fmax(res->nm_max_diff, fabs(nm_est[i] - nm_true[i]));

        printf("\n== noise %.0f%%: %lld labels flipped; out-of-fold accuracy %.2f%% against the "
               "true labels\n",
               100 * levels[level], (long long)num_flipped, 100 * res->oof_accuracy);
        printf("%-26s %8s %10s %8s\n", "filter", "issues", "precision", "recall");
        printf("%-26s %8lld %9.1f%% %7.1f%%\n", "self-confidence top-K", (long long)num_flipped,
               100 * res->topk_precision, 100 * res->topk_precision);
        for (int f = 0; f < NUM_FILTERS; f++)
            printf("%-26s %8lld %9.1f%% %7.1f%%\n", filter_names[f], (long long)res->issues[f],
                   100 * ratio(res->hits[f], res->issues[f]),
                   100 * ratio(res->hits[f], num_flipped));
        printf("%-26s %8lld %9.1f%% %7.1f%%\n", "kd_find_label_issues", (long long)res->kd_suspects,
               100 * ratio(res->kd_hits, res->kd_suspects), 100 * ratio(res->kd_hits, num_flipped));
        printf("noise matrix P(given i | true j), max |estimate - true| %.4f; diagonal:\n",
               res->nm_max_diff);
        printf("  estimate:");
        for (int j = 0; j < C; j++)
            printf(" %.3f", nm_est[j * C + j]);
        printf("\n  true:    ");
        for (int j = 0; j < C; j++)
            printf(" %.3f", nm_true[j * C + j]);
        printf("\n");

        if (level == 0 && cfg.png && *cfg.png) {
            int64_t top[25];
            int count = 0;
            for (int64_t i = 0; i < n && count < 25; i++)
                if (suspect[ranking[i]])
                    top[count++] = ranking[i];
            if (write_grid(cfg.png, &train, top, count, noisy, pred, flipped, fashion) == 0)
                printf("wrote %s: the %d most confident suspects at %.0f%% noise\n", cfg.png, count,
                       100 * levels[level]);
        }

        /* Retraining on all images (or all but the suspects). */
        die_kd(kd_soft_labels(n, C, noisy, KD_LABELS_DEFAULT_IGNORE_INDEX, (float)cfg.label_weight,
                              KD_SOFT_LABEL_ONEHOT, NULL, 0, pred, soft, C, err, sizeof err),
               "soft labels", err);
        die_kd(kd_soft_labels_selective(n, C, noisy, KD_LABELS_DEFAULT_IGNORE_INDEX,
                                        (float)cfg.label_weight, KD_SOFT_LABEL_ONEHOT,
                                        KD_SOFT_LABEL_SUSPECTS_ONLY, probs, C, suspect, soft_sel, C,
                                        err, sizeof err),
               "selective soft labels", err);
        int64_t num_kept = 0;
        for (int64_t i = 0; i < n; i++) {
            relabelled[i] = suspect[i] ? pred[i] : noisy[i];
            if (!suspect[order[i]])
                kept[num_kept++] = order[i];
        }
        int num_jobs = 0, job_of[NUM_RETRAIN + 1];
        for (int m = 0; m <= NUM_RETRAIN; m++) {
            job_of[m] = -1;
            if (m < NUM_RETRAIN ? !run_it[m] : !true_labels || true_accuracy >= 0)
                continue;
            job *j = &jobs[job_of[m] = num_jobs++];
            memset(j, 0, sizeof *j);
            snprintf(j->run, sizeof j->run, "noise%.0f%%-%s", 100 * levels[level],
                     m < NUM_RETRAIN ? retrain_runs[m] : "true-labels");
            j->pool = m == 3 ? kept : order;
            j->pool_n = m == 3 ? num_kept : n;
            j->epochs = cfg.final_epochs;
            j->labels = m == 4 ? relabelled : m == NUM_RETRAIN ? train.y : noisy;
            j->targets = m == 1 ? soft : m == 2 ? soft_sel : NULL;
        }
        tr_run_parallel(num_jobs, threads, run_job, &x, &log);
        for (int m = 0; m < NUM_RETRAIN; m++)
            res->retrain[m] = job_of[m] >= 0 ? jobs[job_of[m]].accuracy : NAN;
        if (job_of[NUM_RETRAIN] >= 0)
            true_accuracy = jobs[job_of[NUM_RETRAIN]].accuracy;
        printf("\n== noise %.0f%%: retrained %lld epochs (suspects: prune_by_noise_rate, %lld), "
               "test accuracy\n",
               100 * levels[level], (long long)cfg.final_epochs, (long long)res->issues[0]);
        for (int m = 0; m < NUM_RETRAIN; m++)
            if (run_it[m])
                printf("  %-28s %6.2f%%\n", retrain_names[m], 100 * res->retrain[m]);
        if (true_accuracy >= 0)
            printf("  %-28s %6.2f%%\n", "true labels", 100 * true_accuracy);
        printf("  (elapsed %.0f s)\n", tr_now() - t_start);
        fflush(stdout);
    }

    printf("\n== kd-noisy summary (%lld training images, %lld-fold out-of-fold predictions, "
           "%lld + %lld epochs, seed %lld; test accuracy on %lld images)\n",
           (long long)n, (long long)cfg.folds, (long long)cfg.epochs, (long long)cfg.final_epochs,
           (long long)cfg.seed, (long long)test.n);
    printf("%6s %8s %7s %7s %22s %22s %22s %6s", "noise", "flipped", "oof", "top-K",
           "noise_rate iss/P/R", "both iss/P/R", "conf_learning iss/P/R", "NMdiff");
    for (int m = 0; m < NUM_RETRAIN; m++)
        printf(" %8s", retrain_runs[m] + (m == 2 ? 5 : 0));
    printf(" %8s\n", "true");
    for (int level = 0; level < num_levels; level++) {
        const level_result *res = &results[level];
        printf("%5.0f%% %8lld %6.2f%% %6.1f%%", 100 * res->noise, (long long)res->flipped,
               100 * res->oof_accuracy, 100 * res->topk_precision);
        static const int shown[3] = {KD_CLEANLAB_PRUNE_BY_NOISE_RATE, KD_CLEANLAB_BOTH,
                                     KD_CLEANLAB_CONFIDENT_LEARNING};
        for (int s = 0; s < 3; s++) {
            int f = shown[s];
            printf(" %8lld %5.1f%% %5.1f%%", (long long)res->issues[f],
                   100 * ratio(res->hits[f], res->issues[f]),
                   100 * ratio(res->hits[f], res->flipped));
        }
        printf(" %6.3f", res->nm_max_diff);
        for (int m = 0; m < NUM_RETRAIN; m++)
            if (run_it[m])
                printf(" %7.2f%%", 100 * res->retrain[m]);
            else
                printf(" %8s", "-");
        if (true_accuracy >= 0)
            printf(" %7.2f%%\n", 100 * true_accuracy);
        else
            printf(" %8s\n", "-");
    }
    printf("(top-K: precision = recall of the K = flipped lowest self-confidence labels; "
           "soft: %.1f * given + %.1f * predicted; soft-suspects: the same for the "
           "prune_by_noise_rate issues only)\n",
           cfg.label_weight, 1 - cfg.label_weight);
    printf("total time %.0f s\n", tr_now() - t_start);

    free(noisy), free(relabelled), free(order), free(kept), free(pred), free(flipped);
    free(suspect), free(mask), free(probs), free(soft), free(soft_sel), free(ranking);
    free(fold_pool), free(nm_est), free(nm_true), free(jobs);
    tr_log_close(&log);
    tr_dataset_free(&train);
    tr_dataset_free(&test);
    return 0;
}
