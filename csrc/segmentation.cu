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
