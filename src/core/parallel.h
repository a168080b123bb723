/* Internal: the library's one way into OpenMP.  With one thread (the default
 * KD_PARAM_THREADS = 1) a loop never enters OpenMP: no parallel region, no
 * team allocation in the runtime, so a compute call whose shapes were seen
 * before allocates nothing and cannot be ended by the runtime's "out of
 * memory" exit (libgomp exits the process when it cannot allocate a team). */
#ifndef KDI_PARALLEL_H
#define KDI_PARALLEL_H

#include <stdint.h>

#define KDI_PRAGMA(x) _Pragma(#x)

/* for (int64_t i = 0; i < n; i++) body, on nthr threads (static schedule)
 * when nthr > 1, else a plain loop on the calling thread. */
#define KDI_PARALLEL_FOR(nthr, i, n, ...)                                                          \
    do {                                                                                           \
        const int kdi_nthr_ = (nthr);                                                              \
        const int64_t kdi_n_ = (n);                                                                \
        if (kdi_nthr_ > 1) {                                                                       \
            KDI_PRAGMA(omp parallel for num_threads(kdi_nthr_) schedule(static))                   \
            for (int64_t i = 0; i < kdi_n_; i++)                                                   \
                __VA_ARGS__                                                                        \
        } else {                                                                                   \
            for (int64_t i = 0; i < kdi_n_; i++)                                                   \
                __VA_ARGS__                                                                        \
        }                                                                                          \
    } while (0)

#endif
