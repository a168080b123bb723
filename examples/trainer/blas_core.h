/* OpenBLAS on the kernels this CPU supports.
 *
 * Debian 12's OpenBLAS (0.3.21) does not know CPUs newer than it and falls
 * back to its Prescott (SSE3) kernels on them, which makes sgemm several
 * times slower.  OpenBLAS reads its core type (OPENBLAS_CORETYPE) only when it
 * is loaded, so tr_blas_core() re-executes the program with the best core
 * type the CPU supports, checks that core's sgemm against a double-precision
 * reference in a child process (a wrong result or a crash rejects it and the
 * next candidate is tried), and prints one line saying what was chosen and
 * why.  It never overrides the user: OPENBLAS_CORETYPE set in the environment
 * is kept as it is, and KD_BLAS_CORE=keep keeps OpenBLAS's own choice.
 * For tests: KD_BLAS_CORE_DETECTED=NAME pretends OpenBLAS detected core NAME,
 * KD_BLAS_CORE_CANDIDATES=A,B replaces the candidates (best first).
 * kdlib itself never sets global OpenBLAS state; this is the programs' part. */
#ifndef TR_BLAS_CORE_H
#define TR_BLAS_CORE_H

/* Call first in main(), before any other thread exists.  Returns only in the
 * process that goes on (it may exec the program again); prints its one line to
 * stdout prefixed by `prog`. */
void tr_blas_core(int argc, char **argv, const char *prog);

/* The check itself: single- and multi-shape sgemm (all four transposition
 * combinations) against a double-precision reference.  Returns the largest
 * error relative to the scale of the result; > 1e-4 means the core is wrong. */
double tr_blas_core_check(void);

#endif
