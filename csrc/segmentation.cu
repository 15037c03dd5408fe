// Segmentation kernels (docs/format.md, Segmentation): nearest-palette labels and palette painting.
//
// Large palettes: each block stages the palette through shared memory in tiles of
// VBK_TILE colours, so a thread's K distance evaluations read shared memory, not global,
// whatever K is (up to 65535). One pixel per thread (no grid-stride loop) because every
// thread of the block must reach the __syncthreads of each tile.
#include "vbk_cuda.cuh"

using namespace vbk;

#define VBK_TILE 256

template <class T, class TL>
__device__ void decode_segmentation_body(const T* rgb, i64 r0, i64 r1, i64 r2, i64 r3, i64 N,
                                         i64 H, i64 W, const typename Work<T>::type* palette,
                                         int K, TL* labels, i64 l0, i64 l1, i64 l2,
                                         float* distance, i64 e0, i64 e1, i64 e2, int has_max,
                                         double max_d2, i64 ignore_index) {
    typedef typename Work<T>::type F;
    __shared__ double raw_tile[3 * VBK_TILE];  // double-sized so either F fits
    F* tile = (F*)raw_tile;
    i64 i = first_index();
    bool active = i < N * H * W;
    Pixel p = pixel_at(active ? i : 0, H, W);
    F pr = 0, pg = 0, pb = 0;
    if (active) {
        const T* px = rgb + offset3(p, r0, r1, r2);
        pr = units<F>(px[0]);
        pg = units<F>(px[r3]);
        pb = units<F>(px[2 * r3]);
    }
    int best = 0;
    F best_d2 = infinity<F>();
    for (int j0 = 0; j0 < K; j0 += VBK_TILE) {
        int count = K - j0 < VBK_TILE ? K - j0 : VBK_TILE;
        __syncthreads();  // the previous tile is no longer read
        for (int j = threadIdx.x; j < 3 * count; j += blockDim.x) tile[j] = palette[3 * j0 + j];
        __syncthreads();
        nearest_in(pr, pg, pb, tile, count, j0, &best, &best_d2);
    }
    if (!active) return;
    bool nan = is_nan(pr) || is_nan(pg) || is_nan(pb);
    labels[offset3(p, l0, l1, l2)] =
        (TL)label_of(best, best_d2, nan, has_max != 0, (F)max_d2, ignore_index);
    if (distance) put(distance + offset3(p, e0, e1, e2), nan ? quiet_nan<F>() : vsqrt(best_d2));
}

// Four labels as one 4-, 8- or 16-byte store (two for int64).
__device__ __forceinline__ void store4(u8* labels, i64 g, const i64* v) {
    ((u32*)labels)[g] = (u32)(v[0] & 255) | ((u32)(v[1] & 255) << 8) |
                        ((u32)(v[2] & 255) << 16) | ((u32)(v[3] & 255) << 24);
}
__device__ __forceinline__ void store4(i16* labels, i64 g, const i64* v) {
    ((uint2*)labels)[g] = make_uint2((u32)(v[0] & 0xffff) | ((u32)(v[1] & 0xffff) << 16),
                                     (u32)(v[2] & 0xffff) | ((u32)(v[3] & 0xffff) << 16));
}
__device__ __forceinline__ void store4(i32* labels, i64 g, const i64* v) {
    ((int4*)labels)[g] = make_int4((int)v[0], (int)v[1], (int)v[2], (int)v[3]);
}
__device__ __forceinline__ void store4(i64* labels, i64 g, const i64* v) {
    ((longlong2*)labels)[2 * g] = make_longlong2(v[0], v[1]);
    ((longlong2*)labels)[2 * g + 1] = make_longlong2(v[2], v[3]);
}

// Contiguous, aligned NHWC uint8 in, contiguous labels (and float32 distances) out: each
// thread labels 4 pixels read as three 32-bit words and stores them as one vector, with the
// palette staged through shared memory in tiles as above. The last group may be partial
// (byte loads, scalar stores).
template <class TL>
__device__ void decode_segmentation_u8x4_body(const u8* rgb, i64 pixels, const float* palette,
                                              int K, TL* labels, float* distance, int has_max,
                                              double max_d2, i64 ignore_index) {
    __shared__ float tile[3 * VBK_TILE];
    const i64 g = first_index();
    const bool active = g < (pixels + 3) / 4;
    const bool whole = 4 * g + 4 <= pixels;
    float pr[4], pg[4], pb[4];
    if (active && whole) {
        Pixels4 p = load_pixels4((const u32*)rgb, g);
        for (int i = 0; i < 4; ++i) {
            pr[i] = (float)p.r[i];
            pg[i] = (float)p.g[i];
            pb[i] = (float)p.b[i];
        }
    } else {
        for (int i = 0; i < 4; ++i) {
            i64 j = 4 * g + i;
            bool inside = active && j < pixels;
            pr[i] = inside ? (float)rgb[3 * j] : 0.0f;
            pg[i] = inside ? (float)rgb[3 * j + 1] : 0.0f;
            pb[i] = inside ? (float)rgb[3 * j + 2] : 0.0f;
        }
    }
    int best[4] = {0, 0, 0, 0};
    float best_d2[4];
    for (int i = 0; i < 4; ++i) best_d2[i] = infinity<float>();
    for (int j0 = 0; j0 < K; j0 += VBK_TILE) {
        int count = K - j0 < VBK_TILE ? K - j0 : VBK_TILE;
        __syncthreads();  // the previous tile is no longer read
        for (int j = threadIdx.x; j < 3 * count; j += blockDim.x) tile[j] = palette[3 * j0 + j];
        __syncthreads();
        for (int i = 0; i < 4; ++i) {
            nearest_in(pr[i], pg[i], pb[i], tile, count, j0, &best[i], &best_d2[i]);
        }
    }
    if (!active) return;
    i64 v[4];
    float e[4];
    for (int i = 0; i < 4; ++i) {
        v[i] = label_of(best[i], best_d2[i], false, has_max != 0, (float)max_d2, ignore_index);
        e[i] = sqrtf(best_d2[i]);
    }
    if (whole) {
        store4(labels, g, v);
        if (distance) ((float4*)distance)[g] = make_float4(e[0], e[1], e[2], e[3]);
        return;
    }
    for (int i = 0; i < 4 && 4 * g + i < pixels; ++i) {
        labels[4 * g + i] = (TL)v[i];
        if (distance) distance[4 * g + i] = e[i];
    }
}

#define VBK_DECODE_SEG_U8X4(LN, TL)                                                            \
    extern "C" __global__ void decode_segmentation_u8x4_##LN(                                  \
        const u8* rgb, i64 pixels, const float* palette, int K, TL* labels, float* distance,   \
        int has_max, double max_d2, i64 ignore_index) {                                        \
        decode_segmentation_u8x4_body<TL>(rgb, pixels, palette, K, labels, distance, has_max,  \
                                          max_d2, ignore_index);                               \
    }
VBK_DECODE_SEG_U8X4(u8, u8)
VBK_DECODE_SEG_U8X4(i16, i16)
VBK_DECODE_SEG_U8X4(i32, i32)
VBK_DECODE_SEG_U8X4(i64, i64)

template <class TL>
__device__ void encode_segmentation_body(const TL* labels, i64 l0, i64 l1, i64 l2, i64 N, i64 H,
                                         i64 W, const u8* palette, int K, const u8* ignore_color,
                                         u8* rgb, i64 r0, i64 r1, i64 r2, i64 r3) {
    for (i64 i = first_index(); i < N * H * W; i += grid_stride()) {
        Pixel p = pixel_at(i, H, W);
        i64 label = (i64)labels[offset3(p, l0, l1, l2)];
        const u8* colour = (label >= 0 && label < K) ? palette + 3 * label : ignore_color;
        u8* px = rgb + offset3(p, r0, r1, r2);
        for (int ch = 0; ch < 3; ++ch) px[ch * r3] = colour[ch];
    }
}

#define VBK_DECODE_SEG(TN, T, LN, TL)                                                          \
    extern "C" __global__ void decode_segmentation_##TN##_##LN(                                \
        const T* rgb, i64 r0, i64 r1, i64 r2, i64 r3, i64 N, i64 H, i64 W,                     \
        const Work<T>::type* palette, int K, TL* labels, i64 l0, i64 l1, i64 l2,               \
        float* distance, i64 e0, i64 e1, i64 e2, int has_max, double max_d2,                   \
        i64 ignore_index) {                                                                    \
        decode_segmentation_body<T, TL>(rgb, r0, r1, r2, r3, N, H, W, palette, K, labels, l0,  \
                                        l1, l2, distance, e0, e1, e2, has_max, max_d2,         \
                                        ignore_index);                                         \
    }
#define VBK_DECODE_SEG_FOR(TN, T, _)                                                           \
    VBK_DECODE_SEG(TN, T, u8, u8) VBK_DECODE_SEG(TN, T, i16, i16)                              \
    VBK_DECODE_SEG(TN, T, i32, i32) VBK_DECODE_SEG(TN, T, i64, i64)
VBK_IMAGE_TYPES(VBK_DECODE_SEG_FOR, )

#define VBK_ENCODE_SEG(LN, TL)                                                                 \
    extern "C" __global__ void encode_segmentation_##LN(                                       \
        const TL* labels, i64 l0, i64 l1, i64 l2, i64 N, i64 H, i64 W, const u8* palette,      \
        int K, const u8* ignore_color, u8* rgb, i64 r0, i64 r1, i64 r2, i64 r3) {              \
        encode_segmentation_body<TL>(labels, l0, l1, l2, N, H, W, palette, K, ignore_color,    \
                                     rgb, r0, r1, r2, r3);                                     \
    }
VBK_ENCODE_SEG(u8, u8)
VBK_ENCODE_SEG(i8, i8)
VBK_ENCODE_SEG(i16, i16)
VBK_ENCODE_SEG(i32, i32)
VBK_ENCODE_SEG(i64, i64)
