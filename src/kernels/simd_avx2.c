/* AVX2 + FMA variant of the SIMD row kernels (compiled with -mavx2 -mfma). */
#include "kernels/simd.h"
#if defined(KD_HAVE_X86_SIMD)
#define KDV_W 8
#define KDV_SUFFIX avx2
#define KDV_ISA KDI_ISA_AVX2
#define KDV_NAME "avx2"
#include "kernels/simd_impl.h"
const kdi_simd_ops *kdi_simd_avx2(void) { return &ops_avx2; }
#else
const kdi_simd_ops *kdi_simd_avx2(void) { return 0; }
#endif
