// Launch-side helpers shared by the .cu files: the pixel index of a flat thread id, with
// 64-bit arithmetic throughout so tensors beyond 2^31 elements address correctly.
#pragma once
#include "vbk_math.cuh"

namespace vbk {

struct Pixel { i64 n, h, w; };

__device__ __forceinline__ Pixel pixel_at(i64 i, i64 H, i64 W) {
    Pixel p;
    p.w = i % W;
    i64 nh = i / W;
    p.h = nh % H;
    p.n = nh / H;
    return p;
}

__device__ __forceinline__ i64 first_index() { return (i64)blockIdx.x * blockDim.x + threadIdx.x; }
__device__ __forceinline__ i64 grid_stride() { return (i64)gridDim.x * blockDim.x; }

// Element offset of (n, h, w[, c]) for a view with element strides s.
__device__ __forceinline__ i64 offset3(const Pixel& p, i64 s0, i64 s1, i64 s2) {
    return p.n * s0 + p.h * s1 + p.w * s2;
}

}  // namespace vbk

// Image element types as (suffix, C type) pairs, for instantiating extern "C" kernels.
#define VBK_IMAGE_TYPES(M, ...) \
    M(u8, vbk::u8, __VA_ARGS__) M(f16, vbk::f16, __VA_ARGS__) M(bf16, vbk::bf16, __VA_ARGS__) \
    M(f32, float, __VA_ARGS__) M(f64, double, __VA_ARGS__)
#define VBK_FLOAT_TYPES(M, ...) \
    M(f16, vbk::f16, __VA_ARGS__) M(bf16, vbk::bf16, __VA_ARGS__) M(f32, float, __VA_ARGS__) \
    M(f64, double, __VA_ARGS__)
