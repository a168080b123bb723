/* OpenBLAS core type: detect the fallback, re-execute on a verified core. */
#define _GNU_SOURCE
#include "blas_core.h"

#include <cblas.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

/* Core types of OpenBLAS 0.3.21 without AVX2 and FMA: on a CPU that has both,
 * OpenBLAS choosing one of these is its fallback for a CPU it does not know. */
static const char *const PRE_AVX2[] = {
    "Prescott",    "Core2",     "Penryn",    "Dunnington", "Nehalem",     "Atom",
    "Katmai",      "Northwood", "Banias",    "Opteron",    "Barcelona",   "Nano",
    "Sandybridge", "Bobcat",    "Bulldozer", "Piledriver", "Steamroller", "Excavator"};

static int is_pre_avx2(const char *core)
{
    for (size_t i = 0; i < sizeof PRE_AVX2 / sizeof *PRE_AVX2; i++)
        if (!strcasecmp(core, PRE_AVX2[i]))
            return 1;
    return !strncasecmp(core, "Opteron", 7);
}

static int has_avx512(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512cd");
}

static int has_avx2_fma(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}

/* The candidates, best first, for this CPU; returns how many (0: none).
 * KD_BLAS_CORE_CANDIDATES=A,B (at most 3, for tests) replaces the list. */
static int candidates(const char **out)
{
    int n = 0;
    static char list[96];
    const char *forced = getenv("KD_BLAS_CORE_CANDIDATES");
    if (forced && *forced) {
        snprintf(list, sizeof list, "%s", forced);
        for (char *save = NULL, *t = strtok_r(list, ",", &save); t && n < 3;
             t = strtok_r(NULL, ",", &save))
            out[n++] = t;
        return n;
    }
    if (has_avx512())
        out[n++] = "SkylakeX";
    if (has_avx2_fma())
        out[n++] = "Haswell";
    return n;
}

static const char *cpu_features(void)
{
    return has_avx512() ? "AVX-512, AVX2, FMA" : has_avx2_fma() ? "AVX2, FMA" : "no AVX2";
}

static uint64_t lcg(uint64_t *s)
{
    *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
    return *s >> 33;
}

static double check_shape(int m, int n, int k, int ta, int tb, uint64_t *seed)
{
    float *a = malloc(sizeof(float) * (size_t)(m * k + k * n + m * n));
    if (!a)
        return INFINITY;
    float *b = a + m * k, *c = b + k * n;
    for (int i = 0; i < m * k + k * n; i++)
        a[i] = (float)((double)lcg(seed) / 2147483648.0 * 2.0 - 1.0);
    /* row-major: A is m x k (k x m when transposed), B is k x n (n x k) */
    const int lda = ta ? m : k, ldb = tb ? k : n;
    cblas_sgemm(CblasRowMajor, ta ? CblasTrans : CblasNoTrans, tb ? CblasTrans : CblasNoTrans, m, n,
                k, 1.0f, a, lda, b, ldb, 0.0f, c, n);
    double worst = 0.0;
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            double ref = 0.0, scale = 0.0;
            for (int p = 0; p < k; p++) {
                double x = ta ? a[p * lda + i] : a[i * lda + p];
                double y = tb ? b[j * ldb + p] : b[p * ldb + j];
                ref += x * y;
                scale += fabs(x * y);
            }
            double e = fabs((double)c[i * n + j] - ref) / (scale > 0.0 ? scale : 1.0);
            if (!(e <= worst)) /* NaN counts as the worst */
                worst = isnan(e) ? INFINITY : e;
        }
    free(a);
    return worst;
}

double tr_blas_core_check(void)
{
    static const int SHAPES[][3] = {{64, 32, 9},  {37, 53, 71},   {128, 96, 300},
                                    {5, 200, 17}, {256, 10, 128}, {1, 1, 1}};
    uint64_t seed = 12345;
    double worst = 0.0;
    for (size_t s = 0; s < sizeof SHAPES / sizeof *SHAPES; s++)
        for (int t = 0; t < 4; t++) {
            double e = check_shape(SHAPES[s][0], SHAPES[s][1], SHAPES[s][2], t & 1, t >> 1, &seed);
            if (!(e <= worst))
                worst = e;
        }
    return worst;
}

/* Runs the check in a child process (a core the CPU cannot run may crash).
 * Returns 1 when the core passed; `why` says what was found. */
static int verify(char *why, size_t size)
{
    int fd[2];
    if (pipe(fd) != 0) {
        snprintf(why, size, "no pipe for the check");
        return 0;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        close(fd[0]);
        close(fd[1]);
        snprintf(why, size, "fork failed");
        return 0;
    }
    if (pid == 0) {
        close(fd[0]);
        openblas_set_num_threads(1);
        double e = tr_blas_core_check();
        ssize_t w = write(fd[1], &e, sizeof e);
        _exit(w == (ssize_t)sizeof e && e <= 1e-4 ? 0 : 1);
    }
    close(fd[1]);
    double e = INFINITY;
    ssize_t r = read(fd[0], &e, sizeof e);
    close(fd[0]);
    int status = 0;
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) {
        snprintf(why, size, "its sgemm crashed (signal %d)", WTERMSIG(status));
        return 0;
    }
    if (r != (ssize_t)sizeof e) {
        snprintf(why, size, "its sgemm check did not finish");
        return 0;
    }
    snprintf(why, size, "sgemm max relative error %.1e against a double-precision reference", e);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

static void reexec(char **argv)
{
    fflush(stdout);
    execv("/proc/self/exe", argv);
    perror("tr_blas_core: execv /proc/self/exe");
}

static void forget_internal(void)
{
    unsetenv("KD_BLAS_CORE_TRY");
    unsetenv("KD_BLAS_CORE_FROM");
    unsetenv("KD_BLAS_CORE_NOTE");
}

static const char *OVERRIDE =
    "OPENBLAS_CORETYPE=NAME to choose, KD_BLAS_CORE=keep to keep OpenBLAS's";

/* In a process started by reexec() with KD_BLAS_CORE_TRY set. */
static void on_trial(char **argv, const char *prog, const char *trying)
{
    char from[64], why[160];
    snprintf(from, sizeof from, "%s",
             getenv("KD_BLAS_CORE_FROM") ? getenv("KD_BLAS_CORE_FROM") : "?");
    const char *earlier = getenv("KD_BLAS_CORE_NOTE");
    if (verify(why, sizeof why)) {
        printf("%s: OpenBLAS chose its %s kernels for this CPU (%s); using %s instead (%s%s%s). "
               "Set %s.\n",
               prog, from, cpu_features(), openblas_get_corename(), why, earlier ? "; " : "",
               earlier ? earlier : "", OVERRIDE);
        forget_internal();
        return;
    }
    const char *c[4];
    int n = candidates(c), next = -1;
    for (int i = 0; i < n; i++)
        if (!strcasecmp(c[i], trying) && i + 1 < n)
            next = i + 1;
    char note[640];
    snprintf(note, sizeof note, "%s%s%s rejected: %s", earlier ? earlier : "", earlier ? "; " : "",
             trying, why);
    setenv("KD_BLAS_CORE_NOTE", note, 1);
    if (next >= 0) {
        setenv("OPENBLAS_CORETYPE", c[next], 1);
        setenv("KD_BLAS_CORE_TRY", c[next], 1);
    } else {
        unsetenv("OPENBLAS_CORETYPE");
        unsetenv("KD_BLAS_CORE_TRY");
    }
    reexec(argv);
}

void tr_blas_core(int argc, char **argv, const char *prog)
{
    (void)argc;
    const char *trying = getenv("KD_BLAS_CORE_TRY");
    if (trying) {
        on_trial(argv, prog, trying);
        return;
    }
    const char *note = getenv("KD_BLAS_CORE_NOTE");
    if (note) {
        printf("%s: OpenBLAS %s kernels kept (%s; no other candidate). Set %s.\n", prog,
               openblas_get_corename(), note, OVERRIDE);
        forget_internal();
        return;
    }
    const char *user = getenv("OPENBLAS_CORETYPE");
    if (user && *user) {
        printf("%s: OpenBLAS %s kernels (OPENBLAS_CORETYPE=%s from the environment)\n", prog,
               openblas_get_corename(), user);
        return;
    }
    const char *keep = getenv("KD_BLAS_CORE");
    const char *detected = getenv("KD_BLAS_CORE_DETECTED");
    if (!detected || !*detected)
        detected = openblas_get_corename();
    const char *c[4];
    const int n = candidates(c);
    if (!is_pre_avx2(detected) || n == 0) {
        printf("%s: OpenBLAS %s kernels (detected by OpenBLAS; the CPU has %s)\n", prog, detected,
               cpu_features());
        return;
    }
    if (keep && !strcmp(keep, "keep")) {
        printf("%s: OpenBLAS %s kernels kept (KD_BLAS_CORE=keep), although the CPU has %s\n", prog,
               detected, cpu_features());
        return;
    }
    const char *preload = getenv("LD_PRELOAD");
    if (preload && strstr(preload, "vgpreload")) {
        printf("%s: OpenBLAS %s kernels kept (under Valgrind, which a re-executed program would "
               "leave)\n",
               prog, detected);
        return;
    }
    setenv("OPENBLAS_CORETYPE", c[0], 1);
    setenv("KD_BLAS_CORE_TRY", c[0], 1);
    setenv("KD_BLAS_CORE_FROM", detected, 1);
    reexec(argv);
    /* execv failed: go on with OpenBLAS's choice */
    unsetenv("OPENBLAS_CORETYPE");
    forget_internal();
}
