// Host-side helpers of the compiled CPU backend: dtype dispatch and the parallel row loop.
// The per-pixel math is ../vbk_math.cuh, the same header the CUDA kernels include.
#pragma once

#include <type_traits>

#include "../vbk_math.cuh"

#define VBK_EXPORT extern "C" __attribute__((visibility("default")))

// Hot loops are compiled twice, for AVX2 and for the x86-64 baseline, and picked at load
// time, so the library stays portable without -march=native.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define VBK_MULTIVERSION __attribute__((target_clones("avx2", "default")))
#else
#define VBK_MULTIVERSION
#endif

// Helpers of multiversioned functions must be inlined into each clone to be compiled for it.
#define VBK_INLINE inline __attribute__((always_inline))

namespace vbk {
namespace cpu {

// Return codes of every exported function; the Python side turns them into exceptions.
enum Status { OK = 0, BAD_DTYPE = 1 };

// Run body(n, h) over every row of an (N, H, W) grid on all OpenMP threads; small images
// stay on the calling thread, where waking the pool would cost more than the work.
template <class Body> void for_rows(i64 N, i64 H, i64 W, Body body) {
    i64 rows = N * H;
    bool parallel = rows > 1 && rows * W >= 32768;
#pragma omp parallel for schedule(static) if (parallel)
    for (i64 row = 0; row < rows; ++row) body(row / H, row % H);
}

template <class P> using pointee = typename std::remove_pointer<P>::type;

// Call fn with a null T* naming the element type of a dtype code; BAD_DTYPE if not allowed.
template <class Fn> int with_image_type(int code, Fn fn) {
    switch (code) {
        case U8: fn((u8*)nullptr); return OK;
        case F16: fn((f16*)nullptr); return OK;
        case BF16: fn((bf16*)nullptr); return OK;
        case F32: fn((float*)nullptr); return OK;
        case F64: fn((double*)nullptr); return OK;
        default: return BAD_DTYPE;
    }
}

template <class Fn> int with_float_type(int code, Fn fn) {
    switch (code) {
        case F16: fn((f16*)nullptr); return OK;
        case BF16: fn((bf16*)nullptr); return OK;
        case F32: fn((float*)nullptr); return OK;
        case F64: fn((double*)nullptr); return OK;
        default: return BAD_DTYPE;
    }
}

template <class Fn> int with_f32_f64(int code, Fn fn) {
    switch (code) {
        case F32: fn((float*)nullptr); return OK;
        case F64: fn((double*)nullptr); return OK;
        default: return BAD_DTYPE;
    }
}

template <class Fn> int with_label_type(int code, Fn fn) {
    switch (code) {
        case U8: fn((u8*)nullptr); return OK;
        case I16: fn((i16*)nullptr); return OK;
        case I32: fn((i32*)nullptr); return OK;
        case I64: fn((i64*)nullptr); return OK;
        default: return BAD_DTYPE;
    }
}

template <class Fn> int with_integer_type(int code, Fn fn) {
    if (code != I8) return with_label_type(code, fn);
    fn((i8*)nullptr);
    return OK;
}

// Pointer to element (n, h, 0[, 0]) of a view with element strides st.
template <class T> T* row_start(T* base, const i64* st, i64 n, i64 h) {
    return base + n * st[0] + h * st[1];
}

}  // namespace cpu
}  // namespace vbk
