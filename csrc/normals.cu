// Normal kernels (SPEC §3): decode RGB to unit normals (+ |n|) and encode normals to RGB.
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
