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

namespace vbk {

// Four packed uint8 RGB pixels (12 bytes) read as three 32-bit words: the fast path for
// contiguous NHWC uint8 images whose data is 4-byte aligned (the launcher checks).
struct Pixels4 { int r[4], g[4], b[4]; };

__device__ __forceinline__ Pixels4 load_pixels4(const u32* words, i64 group) {
    const u32 w[3] = {words[3 * group], words[3 * group + 1], words[3 * group + 2]};
    Pixels4 p;
    for (int i = 0; i < 4; ++i) {
        int byte = 3 * i;  // little-endian: byte j of the 12 is bits 8 (j % 4) of word j / 4
        p.r[i] = (int)((w[byte / 4] >> (8 * (byte % 4))) & 0xffu);
        p.g[i] = (int)((w[(byte + 1) / 4] >> (8 * ((byte + 1) % 4))) & 0xffu);
        p.b[i] = (int)((w[(byte + 2) / 4] >> (8 * ((byte + 2) % 4))) & 0xffu);
    }
    return p;
}

// Walk-table index (segment k * 256 + varying channel value) and squared distance of a
// uint8 pixel, in integers (exact, ties to the lowest k like the reference).
__device__ __forceinline__ int walk_index(int r, int g, int b, int* d2) {
    int k = nearest_segment(r, g, b, d2);
    int channel = varying_channel(k);
    return k * 256 + (channel == 0 ? r : (channel == 1 ? g : b));
}

}  // namespace vbk
