// Back-projection and depth-implied normals (docs/format.md, Points), one pass per pixel.
// Contract and formulas: vbkernels/reference/points.py. The normal kernel back-projects the
// pixel and its four neighbours in registers: no points or tangent buffers in memory.
#include "vbk_cuda.cuh"

using namespace vbk;

template <class F> struct Vec3 { F x, y, z; };

template <class F> struct Camera {
    F fx, fy, cx, cy, skew;
    __device__ explicit Camera(const F* row)
        : fx(row[0]), fy(row[1]), cx(row[2]), cy(row[3]), skew(row[4]) {}
};

// OpenCV-axis point of depth d at pixel (u, v); NaN where d is not finite.
template <class F>
__device__ Vec3<F> back_project(F d, i64 u, i64 v, const Camera<F>& k, bool ray) {
    F y = ((F)v - k.cy) / k.fy;
    F x = ((F)u - k.cx - k.skew * y) / k.fx;
    F z = ray ? d / sqrt(x * x + y * y + (F)1) : d;
    if (!(d - d == (F)0)) {  // NaN or +-inf (NVRTC has no <cmath> isfinite)
        F nan = quiet_nan<F>();
        return {nan, nan, nan};
    }
    return {x * z, y * z, z};
}

template <class F>
__device__ Vec3<F> point_at(const F* depth, i64 d0, i64 d1, i64 d2, i64 n, i64 h, i64 w,
                            const Camera<F>& k, bool ray) {
    return back_project(depth[n * d0 + h * d1 + w * d2], w, h, k, ray);
}

template <class F>
__device__ void store3(F* out, i64 c, Vec3<F> v, bool flip_yz) {
    out[0] = v.x;
    out[c] = flip_yz ? -v.y : v.y;
    out[2 * c] = flip_yz ? -v.z : v.z;
}

template <class F> __device__ Vec3<F> minus(Vec3<F> a, Vec3<F> b) {
    return {a.x - b.x, a.y - b.y, a.z - b.z};
}

template <class F> __device__ F length(Vec3<F> a) { return sqrt((a.x * a.x + a.y * a.y) + a.z * a.z); }

template <class F>
__device__ void points_body(const F* depth, i64 d0, i64 d1, i64 d2, i64 N, i64 H, i64 W,
                            const F* camera, F* out, i64 o0, i64 o1, i64 o2, i64 o3, int ray,
                            int flip_yz) {
    for (i64 i = first_index(); i < N * H * W; i += grid_stride()) {
        Pixel p = pixel_at(i, H, W);
        Camera<F> k(camera + 5 * p.n);
        store3(out + offset3(p, o0, o1, o2), o3,
               point_at(depth, d0, d1, d2, p.n, p.h, p.w, k, ray != 0), flip_yz != 0);
    }
}

template <class F>
__device__ void normals_body(const F* depth, i64 d0, i64 d1, i64 d2, i64 N, i64 H, i64 W,
                             const F* camera, F* out, i64 o0, i64 o1, i64 o2, i64 o3, int ray,
                             int flip_yz) {
    const F nan = quiet_nan<F>();
    for (i64 i = first_index(); i < N * H * W; i += grid_stride()) {
        Pixel p = pixel_at(i, H, W);
        Camera<F> k(camera + 5 * p.n);
        bool r = ray != 0;
        Vec3<F> c = point_at(depth, d0, d1, d2, p.n, p.h, p.w, k, r);
        // One-sided differences at the border (the pixel itself); none along a 1-pixel axis.
        i64 wn = p.w + 1 < W ? p.w + 1 : W - 1, wp = p.w > 0 ? p.w - 1 : 0;
        i64 hn = p.h + 1 < H ? p.h + 1 : H - 1, hp = p.h > 0 ? p.h - 1 : 0;
        Vec3<F> du = minus(point_at(depth, d0, d1, d2, p.n, p.h, wn, k, r),
                           point_at(depth, d0, d1, d2, p.n, p.h, wp, k, r));
        Vec3<F> dv = minus(point_at(depth, d0, d1, d2, p.n, hn, p.w, k, r),
                           point_at(depth, d0, d1, d2, p.n, hp, p.w, k, r));
        if (W < 2) du.x = nan;
        if (H < 2) dv.x = nan;
        // cross(dv, du), turned to face the camera (n . P <= 0).
        Vec3<F> nrm = {dv.y * du.z - dv.z * du.y, dv.z * du.x - dv.x * du.z,
                       dv.x * du.y - dv.y * du.x};
        if ((nrm.x * c.x + nrm.y * c.y) + nrm.z * c.z > (F)0) nrm = {-nrm.x, -nrm.y, -nrm.z};
        F len = length(nrm);
        // False for NaN too; a pixel without a point of its own has no normal either.
        bool valid = len > (F)1e-6 * (length(du) * length(dv)) && c.z == c.z;
        Vec3<F> unit = valid ? Vec3<F>{nrm.x / len, nrm.y / len, nrm.z / len}
                             : Vec3<F>{nan, nan, nan};
        store3(out + offset3(p, o0, o1, o2), o3, unit, flip_yz != 0);
    }
}

#define VBK_POINT_KERNELS(TN, F)                                                               \
    extern "C" __global__ void depth_to_points_##TN(                                           \
        const F* depth, i64 d0, i64 d1, i64 d2, i64 N, i64 H, i64 W, const F* camera, F* out,  \
        i64 o0, i64 o1, i64 o2, i64 o3, int ray, int flip_yz) {                                \
        points_body<F>(depth, d0, d1, d2, N, H, W, camera, out, o0, o1, o2, o3, ray, flip_yz); \
    }                                                                                          \
    extern "C" __global__ void normals_from_depth_##TN(                                        \
        const F* depth, i64 d0, i64 d1, i64 d2, i64 N, i64 H, i64 W, const F* camera, F* out,  \
        i64 o0, i64 o1, i64 o2, i64 o3, int ray, int flip_yz) {                                \
        normals_body<F>(depth, d0, d1, d2, N, H, W, camera, out, o0, o1, o2, o3, ray, flip_yz);\
    }
VBK_POINT_KERNELS(f32, float)
VBK_POINT_KERNELS(f64, double)
