// Normal kernels (docs/format.md, Normals): decode RGB to unit normals (+ |n|) and encode normals to RGB.
#include "vbk_cuda.cuh"

using namespace vbk;

template <class T, class TO>
__device__ void decode_normals_body(const T* rgb, i64 r0, i64 r1, i64 r2, i64 r3, i64 N, i64 H,
                                    i64 W, TO* normals, i64 n0, i64 n1, i64 n2, i64 n3,
                                    float* norm, i64 m0, i64 m1, i64 m2, int flip_yz,
                                    double eps) {
    typedef typename Work<T>::type F;
    for (i64 i = first_index(); i < N * H * W; i += grid_stride()) {
        Pixel p = pixel_at(i, H, W);
        const T* px = rgb + offset3(p, r0, r1, r2);
        Normal<F> n = normal_at(px, r3, (F)eps, flip_yz != 0);
        TO* out = normals + offset3(p, n0, n1, n2);
        for (int ch = 0; ch < 3; ++ch) put(out + ch * n3, n.n[ch]);
        if (norm) put(norm + offset3(p, m0, m1, m2), n.norm);
    }
}

template <class TO> __device__ void store_normal_units(TO* px, i64 c, const double* v) {
    for (int ch = 0; ch < 3; ++ch) put(px + ch * c, v[ch] / 255.0);
}

__device__ void store_normal_units(u8* px, i64 c, const double* v) {
    for (int ch = 0; ch < 3; ++ch) {
        double x = rint(v[ch]);
        px[ch * c] = x > 0.0 ? (u8)x : (u8)0;  // already clamped to [0, 255]; NaN gives 0
    }
}

template <class T, class TO>
__device__ void encode_normals_body(const T* normals, i64 n0, i64 n1, i64 n2, i64 n3, i64 N,
                                    i64 H, i64 W, TO* rgb, i64 r0, i64 r1, i64 r2, i64 r3,
                                    int flip_yz) {
    for (i64 i = first_index(); i < N * H * W; i += grid_stride()) {
        Pixel p = pixel_at(i, H, W);
        const T* px = normals + offset3(p, n0, n1, n2);
        double v[3];
        for (int ch = 0; ch < 3; ++ch) {
            double n = (double)widen(px[ch * n3]);
            v[ch] = normal_units(flip_yz && ch > 0 ? n * -1.0 : n);
        }
        store_normal_units(rgb + offset3(p, r0, r1, r2), r3, v);
    }
}

// Contiguous, aligned NHWC uint8 in, contiguous float32 out: 4 pixels per thread read as
// three 32-bit words and written as three 16-byte vectors (|n| as one).
extern "C" __global__ void decode_normals_u8x4_f32(const u8* rgb, i64 pixels, float* normals,
                                                   float* norm, int flip_yz, double eps) {
    const i64 groups = pixels / 4;
    for (i64 g = first_index(); g < groups; g += grid_stride()) {
        Pixels4 p = load_pixels4((const u32*)rgb, g);
        float v[12], m[4];
        for (int i = 0; i < 4; ++i) {
            Normal<float> n = unit_normal_u8<float>((u8)p.r[i], (u8)p.g[i], (u8)p.b[i],
                                                    (float)eps, flip_yz != 0);
            v[3 * i] = n.n[0];
            v[3 * i + 1] = n.n[1];
            v[3 * i + 2] = n.n[2];
            m[i] = n.norm;
        }
        float4* out = (float4*)normals + 3 * g;
        out[0] = make_float4(v[0], v[1], v[2], v[3]);
        out[1] = make_float4(v[4], v[5], v[6], v[7]);
        out[2] = make_float4(v[8], v[9], v[10], v[11]);
        if (norm) ((float4*)norm)[g] = make_float4(m[0], m[1], m[2], m[3]);
    }
    for (i64 i = 4 * groups + first_index(); i < pixels; i += grid_stride()) {
        Normal<float> n = normal_at(rgb + 3 * i, 1, (float)eps, flip_yz != 0);
        for (int ch = 0; ch < 3; ++ch) normals[3 * i + ch] = n.n[ch];
        if (norm) norm[i] = n.norm;
    }
}

#define VBK_DECODE_NORMALS(ON, TO, TN, T)                                                      \
    extern "C" __global__ void decode_normals_##TN##_##ON(                                     \
        const T* rgb, i64 r0, i64 r1, i64 r2, i64 r3, i64 N, i64 H, i64 W, TO* normals,        \
        i64 n0, i64 n1, i64 n2, i64 n3, float* norm, i64 m0, i64 m1, i64 m2, int flip_yz,      \
        double eps) {                                                                          \
        decode_normals_body<T, TO>(rgb, r0, r1, r2, r3, N, H, W, normals, n0, n1, n2, n3,      \
                                   norm, m0, m1, m2, flip_yz, eps);                            \
    }
#define VBK_DECODE_NORMALS_FOR(TN, T, _) VBK_FLOAT_TYPES(VBK_DECODE_NORMALS, TN, T)
VBK_IMAGE_TYPES(VBK_DECODE_NORMALS_FOR, )

#define VBK_ENCODE_NORMALS(TN, T, ON, TO)                                                      \
    extern "C" __global__ void encode_normals_##TN##_##ON(                                     \
        const T* normals, i64 n0, i64 n1, i64 n2, i64 n3, i64 N, i64 H, i64 W, TO* rgb,        \
        i64 r0, i64 r1, i64 r2, i64 r3, int flip_yz) {                                         \
        encode_normals_body<T, TO>(normals, n0, n1, n2, n3, N, H, W, rgb, r0, r1, r2, r3,      \
                                   flip_yz);                                                   \
    }
#define VBK_ENCODE_NORMALS_FOR(ON, TO, _) VBK_FLOAT_TYPES(VBK_ENCODE_NORMALS, ON, TO)
VBK_IMAGE_TYPES(VBK_ENCODE_NORMALS_FOR, )
