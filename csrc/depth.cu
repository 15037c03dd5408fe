// Depth kernels (docs/format.md, Depth): cube-walk projection, decode to metric depth, and the encoders.
// One thread per pixel in a grid-stride loop; views of any strides (element strides per
// dim, 64-bit), one extern "C" kernel per (input dtype, output dtype) pair.
#include "vbk_cuda.cuh"

using namespace vbk;

template <class T, class TO>
__device__ void hilbert_project_body(const T* rgb, i64 r0, i64 r1, i64 r2, i64 r3, i64 N, i64 H,
                                     i64 W, TO* t, i64 t0, i64 t1, i64 t2) {
    typedef typename Work<T>::type F;
    for (i64 i = first_index(); i < N * H * W; i += grid_stride()) {
        Pixel p = pixel_at(i, H, W);
        Rgb<F> px = load_rgb<F>(rgb + offset3(p, r0, r1, r2), r3);
        Projection<F> proj = project(px);
        bool nan = px.nan;
        put(t + offset3(p, t0, t1, t2), nan ? quiet_nan<F>() : walk_t(proj.k, proj.s));
    }
}

template <class T, class TO>
__device__ void decode_depth_body(const T* rgb, i64 r0, i64 r1, i64 r2, i64 r3, i64 N, i64 H,
                                  i64 W, TO* depth, i64 d0, i64 d1, i64 d2, float* distance,
                                  i64 e0, i64 e1, i64 e2, double neg_lam_c, double lam1,
                                  int has_max, double max_depth) {
    typedef typename Work<T>::type F;
    for (i64 i = first_index(); i < N * H * W; i += grid_stride()) {
        Pixel p = pixel_at(i, H, W);
        Rgb<F> px = load_rgb<F>(rgb + offset3(p, r0, r1, r2), r3);
        Projection<F> proj = project(px);
        bool nan = px.nan;
        F t = walk_t(proj.k, proj.s), u = walk_u(proj.k, proj.r);
        F d = inverse_power(t, u, (F)neg_lam_c, (F)lam1);
        if (has_max) d = clamp_max(d, (F)max_depth);
        put(depth + offset3(p, d0, d1, d2), nan ? quiet_nan<F>() : d);
        if (distance) put(distance + offset3(p, e0, e1, e2), nan ? quiet_nan<F>() : vsqrt(proj.d2));
    }
}

template <class TO>
__device__ void store_walk_point(const WalkPoint& w, TO* px, i64 c) {
    for (int ch = 0; ch < 3; ++ch) put(px + ch * c, w.v[ch]);
}

__device__ void store_walk_point(const WalkPoint& w, u8* px, i64 c) {
    for (int ch = 0; ch < 3; ++ch) px[ch * c] = unit_to_u8(w.v[ch]);
}

template <class T, class TO>
__device__ void hilbert_walk_body(const T* t, i64 t0, i64 t1, i64 t2, i64 N, i64 H, i64 W,
                                  TO* rgb, i64 r0, i64 r1, i64 r2, i64 r3) {
    for (i64 i = first_index(); i < N * H * W; i += grid_stride()) {
        Pixel p = pixel_at(i, H, W);
        double value = (double)widen(t[offset3(p, t0, t1, t2)]);
        store_walk_point(walk_point(value), rgb + offset3(p, r0, r1, r2), r3);
    }
}

template <class T, class TO>
__device__ void encode_depth_body(const T* depth, i64 d0, i64 d1, i64 d2, i64 N, i64 H, i64 W,
                                  TO* rgb, i64 r0, i64 r1, i64 r2, i64 r3, double neg_lam_c,
                                  double lam1) {
    for (i64 i = first_index(); i < N * H * W; i += grid_stride()) {
        Pixel p = pixel_at(i, H, W);
        double d = (double)widen(depth[offset3(p, d0, d1, d2)]);
        store_walk_point(walk_point(power_transform(d, neg_lam_c, lam1)),
                         rgb + offset3(p, r0, r1, r2), r3);
    }
}

#define VBK_PROJECT(TN, T, ON, TO)                                                             \
    extern "C" __global__ void hilbert_project_##TN##_##ON(                                    \
        const T* rgb, i64 r0, i64 r1, i64 r2, i64 r3, i64 N, i64 H, i64 W, TO* t, i64 t0,      \
        i64 t1, i64 t2) {                                                                      \
        hilbert_project_body<T, TO>(rgb, r0, r1, r2, r3, N, H, W, t, t0, t1, t2);               \
    }                                                                                          \
    extern "C" __global__ void decode_depth_##TN##_##ON(                                       \
        const T* rgb, i64 r0, i64 r1, i64 r2, i64 r3, i64 N, i64 H, i64 W, TO* depth, i64 d0,  \
        i64 d1, i64 d2, float* distance, i64 e0, i64 e1, i64 e2, double neg_lam_c,             \
        double lam1, int has_max, double max_depth) {                                          \
        decode_depth_body<T, TO>(rgb, r0, r1, r2, r3, N, H, W, depth, d0, d1, d2, distance,    \
                                 e0, e1, e2, neg_lam_c, lam1, has_max, max_depth);             \
    }
#define VBK_PROJECT_OUTPUTS(TN, T, _) VBK_PROJECT(TN, T, f32, float) VBK_PROJECT(TN, T, f64, double)
VBK_IMAGE_TYPES(VBK_PROJECT_OUTPUTS, )

// Contiguous, aligned NHWC uint8 in, contiguous float32 out: each thread reads 4 pixels as
// three 32-bit words, gathers t or depth from a 7 x 256 table staged in shared memory (the
// launcher computes it with the torch reference: no log/exp per pixel) and writes 16-byte
// vectors. The P % 4 pixels past the last whole group are read byte by byte.
extern "C" __global__ void walk_table_u8x4_f32(const u8* rgb, i64 pixels, const float* table,
                                               float* out, float* distance) {
    __shared__ float shared_table[7 * 256];
    for (int i = threadIdx.x; i < 7 * 256; i += blockDim.x) shared_table[i] = table[i];
    __syncthreads();
    const i64 groups = pixels / 4;
    for (i64 g = first_index(); g < groups; g += grid_stride()) {
        Pixels4 p = load_pixels4((const u32*)rgb, g);
        float v[4], e[4];
        for (int i = 0; i < 4; ++i) {
            int d2;
            v[i] = shared_table[walk_index(p.r[i], p.g[i], p.b[i], &d2)];
            e[i] = sqrtf((float)d2);
        }
        ((float4*)out)[g] = make_float4(v[0], v[1], v[2], v[3]);
        if (distance) ((float4*)distance)[g] = make_float4(e[0], e[1], e[2], e[3]);
    }
    for (i64 i = 4 * groups + first_index(); i < pixels; i += grid_stride()) {
        int d2;
        out[i] = shared_table[walk_index(rgb[3 * i], rgb[3 * i + 1], rgb[3 * i + 2], &d2)];
        if (distance) distance[i] = sqrtf((float)d2);
    }
}

#define VBK_WALK(TN, T, ON, TO)                                                                \
    extern "C" __global__ void hilbert_walk_##TN##_##ON(const T* t, i64 t0, i64 t1, i64 t2,   \
                                                        i64 N, i64 H, i64 W, TO* rgb, i64 r0,  \
                                                        i64 r1, i64 r2, i64 r3) {              \
        hilbert_walk_body<T, TO>(t, t0, t1, t2, N, H, W, rgb, r0, r1, r2, r3);                 \
    }                                                                                          \
    extern "C" __global__ void encode_depth_##TN##_##ON(                                       \
        const T* depth, i64 d0, i64 d1, i64 d2, i64 N, i64 H, i64 W, TO* rgb, i64 r0, i64 r1,  \
        i64 r2, i64 r3, double neg_lam_c, double lam1) {                                       \
        encode_depth_body<T, TO>(depth, d0, d1, d2, N, H, W, rgb, r0, r1, r2, r3, neg_lam_c,   \
                                 lam1);                                                        \
    }
#define VBK_WALK_INPUTS(ON, TO, _) VBK_FLOAT_TYPES(VBK_WALK, ON, TO)
VBK_IMAGE_TYPES(VBK_WALK_INPUTS, )
