/* Portable variant of the SIMD row kernels (SSE2 on x86-64; scalar code where
 * the compiler has no vector unit). */
#define KDV_W 8
#define KDV_SUFFIX base
#define KDV_ISA KDI_ISA_BASE
#define KDV_NAME "base"
#include "kernels/simd_impl.h"

const kdi_simd_ops *kdi_simd_base(void) { return &ops_base; }

const kdi_simd_ops *kdi_simd(int isa)
{
#if defined(__x86_64__) || defined(__i386__)
    int has_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int has_avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq");
#else
    int has_avx2 = 0, has_avx512 = 0;
#endif
    switch (isa) {
    case KDI_ISA_AUTO:
        if (has_avx512 && kdi_simd_avx512())
            return kdi_simd_avx512();
        if (has_avx2 && kdi_simd_avx2())
            return kdi_simd_avx2();
        return &ops_base;
    case KDI_ISA_BASE:
        return &ops_base;
    case KDI_ISA_AVX2:
        return has_avx2 ? kdi_simd_avx2() : NULL;
    case KDI_ISA_AVX512:
        return has_avx512 ? kdi_simd_avx512() : NULL;
    default:
        return NULL;
    }
}
