/* Template of the SIMD row kernels (see simd.h), written once with GCC/Clang
 * vector extensions.  Included by simd_base.c, simd_avx2.c and simd_avx512.c
 * with KDV_W (lanes) and KDV_SUFFIX (name suffix) defined; each file is
 * compiled for its own instruction set.
 *
 * Every loop handles full vectors, then the remainder of the row as one more
 * vector (see vtail: the row's last W elements again, or for a row shorter
 * than W a padded copy) with a lane mask, so each element goes through
 * exactly the same arithmetic wherever it sits in the row.
 *
 * The template is split by concern; each part needs the ones before it:
 * simd_math.h (vector primitives, exp, single-pass row reductions),
 * simd_pipe.h (segments, threads and the pipe), simd_rows.h (long-row
 * kernels), simd_short.h (short-row kernels), simd_cons.h (the consistency
 * row).  This file ends with the variant's ops table. */
#include "kernels/simd_math.h"
#include "kernels/simd_pipe.h"
#include "kernels/simd_rows.h"
#include "kernels/simd_short.h"
#include "kernels/simd_cons.h"

static const kdi_simd_ops KDV_FN(ops_) = {
    KDV_ISA,
    KDV_NAME,
    KDV_W,
    KDV_SMALL_C,
    KDV_MSE_SMALL_C,
    KDV_FN(row_max_),
    KDV_FN(row_sumexp_),
    KDV_FN(row_argmax_),
    KDV_FN(row_confidence_),
    KDV_FN(kl_row_),
    KDV_FN(ce_row_),
    KDV_FN(mse_row_),
    KDV_FN(kl_small_),
    KDV_FN(ce_small_),
    KDV_FN(pl_small_),
    KDV_FN(mse_small_),
    KDV_FN(cons_row_),
};
