// Colormap inversion (docs/format.md, Colormaps): each pixel's nearest point on the
// colormap's polyline through RGB space, operation for operation as
// vbkernels/reference/colormap.py specifies it (its docstring is the contract).
//
// Work type: double for uint8 and double images (with integer vertices every quantity
// before the two divisions is an exact integer, so segment choices, t and distance are
// bit-identical to the reference), float for the other floats. Divisions and square roots
// are IEEE round-to-nearest (NVRTC's defaults), and the module is compiled with
// --fmad=false (vbkernels/cuda/_lib.py), so t = start + s * span rounds twice, as the
// reference does, instead of once in an FMA.
//
// One pixel per thread in a grid-stride loop; the M float64 vertices are read from global
// memory, every thread of a warp reading the same vertex at once (one broadcast load).
#include "vbk_cuda.cuh"

using namespace vbk;

// The work type of an image type, and the type of its t output.
template <class T> struct ColormapWork { typedef float type; typedef float out; };
template <> struct ColormapWork<u8> { typedef double type; typedef float out; };
template <> struct ColormapWork<double> { typedef double type; typedef double out; };

// Squared distance, fraction s and segment j of the nearest point: before / after / inner
// cases of the contract, strict < over ascending segments (ties to the lowest).
template <class F>
VBK_HD void nearest_on_polyline(F pr, F pg, F pb, const double* colours, int M, F* best_d2,
                                F* best_s, int* best_j) {
    F ar = (F)colours[0], ag = (F)colours[1], ab = (F)colours[2];
    // The fraction as a quotient (0/1 before, 1/1 after, dot/L inside), divided once for
    // the chosen segment: the same correctly rounded value, one division per segment fewer.
    F best = infinity<F>(), num_best = (F)0, den_best = (F)1;
    int j_best = 0;
    for (int j = 0; j + 1 < M; ++j) {
        const F br = (F)colours[3 * j + 3], bg = (F)colours[3 * j + 4], bb = (F)colours[3 * j + 5];
        const F dr = br - ar, dg = bg - ag, db = bb - ab;
        const F length2 = (dr * dr + dg * dg) + db * db;
        const F er = pr - ar, eg = pg - ag, eb = pb - ab;
        const F dot = (er * dr + eg * dg) + eb * db;
        const F ee = (er * er + eg * eg) + eb * eb;
        F d2, num = (F)0, den = (F)1;
        if (dot <= (F)0) {  // also every zero-length segment (dot == 0)
            d2 = ee;
        } else if (dot >= length2) {
            d2 = ee - (F)2 * dot + length2;
            d2 = d2 > (F)0 ? d2 : (F)0;  // float rounding can dip below 0 at a vertex
            num = (F)1;
        } else {  // 0 < dot < length2, so length2 > 0
            F gap = ee * length2 - dot * dot;
            d2 = (gap > (F)0 ? gap : (F)0) / length2;
            num = dot;
            den = length2;
        }
        if (d2 < best) {
            best = d2;
            num_best = num;
            den_best = den;
            j_best = j;
        }
        ar = br;
        ag = bg;
        ab = bb;
    }
    *best_d2 = best;
    *best_s = num_best / den_best;
    *best_j = j_best;
}

// One pixel (channel stride r3): t, or NaN for a NaN pixel or one whose float32 distance
// exceeds max_distance, and the distance (NaN for a NaN pixel). Host and device, so the
// tests can run the same code on a machine without a GPU.
template <class T>
VBK_HD void colormap_pixel(const T* px, i64 r3, const double* colours, const double* positions,
                           int M, int has_max, float max_distance,
                           typename ColormapWork<T>::out* t, float* distance) {
    typedef typename ColormapWork<T>::type F;
    typedef typename ColormapWork<T>::out TT;
    const F pr = units<F>(px[0]), pg = units<F>(px[r3]), pb = units<F>(px[2 * r3]);
    F d2, s;
    int j;
    nearest_on_polyline(pr, pg, pb, colours, M, &d2, &s, &j);
    // Positions rounded to the work type first, as the reference converts them.
    const F start = (F)positions[j], end = (F)positions[j + 1];
    const F value = start + s * (end - start);
    const bool nan = is_nan(pr) || is_nan(pg) || is_nan(pb);
    const float dist = nan ? quiet_nan<float>() : (float)vsqrt(d2);
    const bool drop = nan || (has_max != 0 && dist > max_distance);
    *t = drop ? quiet_nan<TT>() : (TT)value;
    *distance = dist;
}

template <class T>
__device__ void decode_colormap_body(const T* rgb, i64 r0, i64 r1, i64 r2, i64 r3, i64 N,
                                     i64 H, i64 W, const double* colours,
                                     const double* positions, int M,
                                     typename ColormapWork<T>::out* t, i64 t0, i64 t1, i64 t2,
                                     float* distance, i64 e0, i64 e1, i64 e2, int has_max,
                                     float max_distance) {
    for (i64 i = first_index(); i < N * H * W; i += grid_stride()) {
        Pixel p = pixel_at(i, H, W);
        float dist;
        colormap_pixel(rgb + offset3(p, r0, r1, r2), r3, colours, positions, M, has_max,
                       max_distance, t + offset3(p, t0, t1, t2), &dist);
        if (distance) distance[offset3(p, e0, e1, e2)] = dist;
    }
}

#define VBK_DECODE_COLORMAP(TN, T, _)                                                           \
    extern "C" __global__ void decode_colormap_##TN(                                            \
        const T* rgb, i64 r0, i64 r1, i64 r2, i64 r3, i64 N, i64 H, i64 W,                      \
        const double* colours, const double* positions, int M, ColormapWork<T>::out* t,         \
        i64 t0, i64 t1, i64 t2, float* distance, i64 e0, i64 e1, i64 e2, int has_max,           \
        float max_distance) {                                                                   \
        decode_colormap_body<T>(rgb, r0, r1, r2, r3, N, H, W, colours, positions, M, t, t0, t1, \
                                t2, distance, e0, e1, e2, has_max, max_distance);               \
    }
VBK_IMAGE_TYPES(VBK_DECODE_COLORMAP, )
