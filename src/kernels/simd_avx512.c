/* AVX-512 variant of the SIMD row kernels (compiled with -mavx512f -mavx512dq). */
#include "kernels/simd.h"
#if defined(KD_HAVE_X86_SIMD)
#define KDV_W 16
#define KDV_SUFFIX avx512
#define KDV_ISA KDI_ISA_AVX512
#define KDV_NAME "avx512"
#include "kernels/simd_impl.h"
const kdi_simd_ops *kdi_simd_avx512(void) { return &ops_avx512; }
#else
const kdi_simd_ops *kdi_simd_avx512(void) { return 0; }
#endif
