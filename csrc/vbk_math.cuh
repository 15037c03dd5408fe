// Per-pixel math of vbkernels (docs/format.md), shared by the CUDA kernels (NVRTC or nvcc) and
// the compiled CPU backend (g++). Every function mirrors vbkernels/reference/*.py operation
// for operation, in the same order and precision, so uint8 segment choices and labels are
// bit-identical to the torch reference and float results agree to the tolerance of docs/format.md, Precision.
//
// No standard headers under NVRTC (it has none without a toolkit): fixed-width integer
// types, half and bfloat16 are defined here, the 16-bit floats as raw bits with
// round-to-nearest-even conversions written out.
#pragma once

#if defined(__CUDACC__) || defined(__CUDACC_RTC__)
#define VBK_HD __host__ __device__ __forceinline__
#else
#define VBK_HD inline
#endif

#if !defined(__CUDACC_RTC__)
#include <math.h>
#include <string.h>
#endif

namespace vbk {

typedef unsigned char u8;
typedef signed char i8;
typedef short i16;
typedef int i32;
typedef long long i64;
typedef unsigned short u16;
typedef unsigned int u32;

// IEEE binary16 and bfloat16 as stored bits; converted through float32 like torch does.
struct f16 { u16 bits; };
struct bf16 { u16 bits; };

// Dtype codes shared with the Python launchers (vbkernels/cpu/_lib.py, vbkernels/cuda/_lib.py).
enum Dtype { U8 = 0, F16 = 1, BF16 = 2, F32 = 3, F64 = 4, I8 = 5, I16 = 6, I32 = 7, I64 = 8 };

VBK_HD float bits_to_f32(u32 u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

VBK_HD u32 f32_to_bits(float f) {
#ifdef __CUDA_ARCH__
    return __float_as_uint(f);
#else
    u32 u;
    memcpy(&u, &f, 4);
    return u;
#endif
}

VBK_HD float widen(f16 h) {
    u32 sign = (u32)(h.bits & 0x8000u) << 16;
    u32 exponent = (h.bits >> 10) & 0x1fu;
    u32 mantissa = h.bits & 0x3ffu;
    if (exponent == 0x1fu) return bits_to_f32(sign | 0x7f800000u | (mantissa << 13));
    if (exponent == 0) {
        // Zero or subnormal: mantissa * 2^-24 is exact in float32.
        float magnitude = (float)mantissa * 5.9604644775390625e-8f;
        return sign ? -magnitude : magnitude;
    }
    return bits_to_f32(sign | ((exponent + 112u) << 23) | (mantissa << 13));
}

VBK_HD float widen(bf16 h) { return bits_to_f32((u32)h.bits << 16); }
VBK_HD float widen(float x) { return x; }
VBK_HD double widen(double x) { return x; }

VBK_HD f16 narrow_f16(float f) {
    u32 x = f32_to_bits(f);
    u16 sign = (u16)((x >> 16) & 0x8000u);
    u32 ax = x & 0x7fffffffu;
    f16 out;
    if (ax > 0x7f800000u) { out.bits = sign | 0x7e00u; return out; }          // NaN
    if (ax >= 0x477ff000u) { out.bits = sign | 0x7c00u; return out; }         // >= 65520 -> inf
    if (ax < 0x38800000u) {
        // Below the smallest normal half (2^-14): scaling by 2^24 is exact, rintf rounds
        // half to even, and a result of 1024 is correctly the smallest normal's bits.
        out.bits = sign | (u16)rintf(bits_to_f32(ax) * 16777216.0f);
        return out;
    }
    u32 h = (((ax >> 23) - 112u) << 10) | ((ax & 0x7fffffu) >> 13);
    u32 rest = ax & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h += 1;  // carry may bump the exponent
    out.bits = sign | (u16)h;
    return out;
}

VBK_HD bf16 narrow_bf16(float f) {
    u32 x = f32_to_bits(f);
    bf16 out;
    if ((x & 0x7fffffffu) > 0x7f800000u) {
        out.bits = (u16)((x >> 16) | 0x40u);  // keep NaN a NaN
        return out;
    }
    out.bits = (u16)((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
    return out;
}

// Stores with torch's conversion rules: float64 -> 16-bit goes through float32.
VBK_HD void put(float* p, float v) { *p = v; }
VBK_HD void put(float* p, double v) { *p = (float)v; }
VBK_HD void put(double* p, float v) { *p = (double)v; }
VBK_HD void put(double* p, double v) { *p = v; }
VBK_HD void put(f16* p, float v) { *p = narrow_f16(v); }
VBK_HD void put(f16* p, double v) { *p = narrow_f16((float)v); }
VBK_HD void put(bf16* p, float v) { *p = narrow_bf16(v); }
VBK_HD void put(bf16* p, double v) { *p = narrow_bf16((float)v); }

// Working precision (docs/format.md, Units and dtypes): float64 input computes in float64, everything else in float32.
template <class T> struct Work { typedef float type; };
template <> struct Work<double> { typedef double type; };

VBK_HD float vlog(float x) { return logf(x); }
VBK_HD double vlog(double x) { return log(x); }
VBK_HD float vlog1p(float x) { return log1pf(x); }
VBK_HD double vlog1p(double x) { return log1p(x); }
VBK_HD float vexpm1(float x) { return expm1f(x); }
VBK_HD double vexpm1(double x) { return expm1(x); }
VBK_HD float vsqrt(float x) { return sqrtf(x); }
VBK_HD double vsqrt(double x) { return sqrt(x); }

template <class F> VBK_HD bool is_nan(F x) { return x != x; }

template <class F> VBK_HD F quiet_nan() { return (F)bits_to_f32(0x7fc00000u); }

// 0..255 units (docs/format.md, Units and dtypes). Float input is clamped to [0, 1] with comparisons, so NaN
// passes through as NaN, like torch.clamp.
template <class F> VBK_HD F units(u8 v) { return (F)v; }
template <class F, class T> VBK_HD F units(T v) {
    F x = (F)widen(v);
    x = x < (F)0 ? (F)0 : (x > (F)1 ? (F)1 : x);
    return x * (F)255;
}

// ---------------------------------------------------------------------------------------
// Depth: cube-walk projection (docs/format.md, Depth)
// ---------------------------------------------------------------------------------------

// Walk vertices as one bit per k (bit k = vertex k's channel is 1); see vbkernels/_walk.py.
VBK_HD int vertex_bit(int channel, int k) {
    const unsigned masks = 0xF09CC6u;  // R: 0xC6, G: 0x9C, B: 0xF0 in bytes 0, 1, 2
    return (int)((masks >> (8 * channel + k)) & 1u);
}

// Channel that varies along segment k -> k+1 (0 R, 1 G, 2 B) and whether it rises.
VBK_HD int varying_channel(int k) { return (k == 0 || k == 2 || k == 5) ? 0 : (k == 3 ? 2 : 1); }
VBK_HD bool rising(int k) { return !(k == 2 || k == 4); }

// Squared distance (in F, exact for integer units) from a pixel to each walk segment: the
// two fixed channels' offsets from 0 or 255. Negating a difference is exact, so (255 - p)^2
// equals the reference's (p - 255)^2 bit for bit.
template <class F> struct Projection {
    int k;   // chosen segment, ties to the lowest
    F s;     // local position in [0, 1]
    F r;     // 1 - s, computed directly (no cancellation near the segment end)
    F d2;    // squared distance to the segment
};

template <class F> VBK_HD int nearest_segment(F pr, F pg, F pb, F* best_d2) {
    F lr = pr * pr, lg = pg * pg, lb = pb * pb;
    F hr = ((F)255 - pr) * ((F)255 - pr);
    F hg = ((F)255 - pg) * ((F)255 - pg);
    F hb = ((F)255 - pb) * ((F)255 - pb);
    F d[7] = {lg + lb, hr + lb, hg + lb, lr + hg, lr + hb, lg + hb, hr + hb};
    int k = 0;
    F best = d[0];
    for (int j = 1; j < 7; ++j) {
        if (d[j] < best) { best = d[j]; k = j; }
    }
    *best_d2 = best;
    return k;
}

// A pixel as the reference sees it: 0..255 units for distances, and per channel its
// position along a walk edge, up = v/255 and down = 1 - up, each computed directly from the
// input (uint8: p/255 and (255 - p)/255; float: clamp(x) and 1 - clamp(x)) so the distance
// to the end of a segment, and with it depth near white, keeps full precision.
template <class F> struct Rgb {
    F p[3];
    F up[3];
    F down[3];
    bool nan;
};

template <class F> VBK_HD void set_channel(Rgb<F>& px, int ch, u8 v) {
    px.p[ch] = (F)v;
    px.up[ch] = px.p[ch] / (F)255;
    px.down[ch] = ((F)255 - px.p[ch]) / (F)255;
}

template <class F, class T> VBK_HD void set_channel(Rgb<F>& px, int ch, T v) {
    F x = (F)widen(v);
    x = x < (F)0 ? (F)0 : (x > (F)1 ? (F)1 : x);
    px.p[ch] = x * (F)255;
    px.up[ch] = x;
    px.down[ch] = (F)1 - x;
}

// Channels at ptr[0], ptr[c], ptr[2c].
template <class F, class T> VBK_HD Rgb<F> load_rgb(const T* ptr, i64 c) {
    Rgb<F> px;
    set_channel(px, 0, ptr[0]);
    set_channel(px, 1, ptr[c]);
    set_channel(px, 2, ptr[2 * c]);
    px.nan = is_nan(px.p[0]) || is_nan(px.p[1]) || is_nan(px.p[2]);
    return px;
}

// Local position s on segment k and its complement r, from the varying channel.
template <class F> VBK_HD void edge_position(int k, const Rgb<F>& px, F* s, F* r) {
    int channel = varying_channel(k);
    bool up_is_s = rising(k);
    *s = up_is_s ? px.up[channel] : px.down[channel];
    *r = up_is_s ? px.down[channel] : px.up[channel];
}

template <class F> VBK_HD Projection<F> project(const Rgb<F>& px) {
    Projection<F> out;
    out.k = nearest_segment(px.p[0], px.p[1], px.p[2], &out.d2);
    edge_position(out.k, px, &out.s, &out.r);
    return out;
}

// t = (k + s) / 7 and u = 1 - t = ((6 - k) + r) / 7 without cancellation.
template <class F> VBK_HD F walk_t(int k, F s) { return ((F)k + s) / (F)7; }
template <class F> VBK_HD F walk_u(int k, F r) { return ((F)(6 - k) + r) / (F)7; }

// d = lam*c*(1 - u^(1/(lam+1))) as -lam*c * expm1(log(u)/(lam+1)); log(u) from log1p(-t)
// for small t. u == 0 (white) gives +inf. neg_lam_c = -lam*c, lam1 = lam + 1.
template <class F> VBK_HD F inverse_power(F t, F u, F neg_lam_c, F lam1) {
    F log_u = t < (F)0.5 ? vlog1p(-t) : vlog(u);
    return neg_lam_c * vexpm1(log_u / lam1);
}

// Clamp from above keeping NaN, like torch.clamp_max.
template <class F> VBK_HD F clamp_max(F x, F hi) { return x > hi ? hi : x; }

// Forward transform t = 1 - (1 - d/(lam*c))^(lam+1) in float64, as the reference: with
// log_u = (lam+1) * log1p(d / (-lam*c)), the log of 1 - t, small depths take -expm1(log_u)
// (relative precision of tiny t) and t > 1/2 takes 1 - exp(log_u), which stays below 1
// while float64 can tell t from 1 (-expm1 saturates to exactly 1, i.e. white, the colour
// of infinite depth, already at d = 1e9 m with the defaults).
VBK_HD double power_transform(double depth, double neg_lam_c, double lam1) {
    const double log_half = -0.6931471805599453;
    double log_u = lam1 * log1p(depth / neg_lam_c);
    return log_u > log_half ? -expm1(log_u) : 1.0 - exp(log_u);
}

// Point of the walk at t in [0, 1] units (clamped), channel by channel, in float64:
// start + s * (end - start) exactly as the reference evaluates it.
struct WalkPoint { double v[3]; bool nan; };

VBK_HD WalkPoint walk_point(double t) {
    WalkPoint p;
    p.nan = is_nan(t);
    double x = (t < 0.0 ? 0.0 : (t > 1.0 ? 1.0 : t)) * 7.0;
    double kf = p.nan ? 0.0 : floor(x);
    int k = kf > 6.0 ? 6 : (int)kf;
    double s = x - (double)k;
    for (int ch = 0; ch < 3; ++ch) {
        double start = (double)vertex_bit(ch, k);
        double end = (double)vertex_bit(ch, k + 1);
        p.v[ch] = p.nan ? quiet_nan<double>() : start + s * (end - start);
    }
    return p;
}

// [0, 1] value to uint8: round half to even of 255*v, clamped (NaN gives 0).
VBK_HD u8 unit_to_u8(double v) {
    double x = rint(v * 255.0);
    if (!(x > 0.0)) return 0;
    return x > 255.0 ? (u8)255 : (u8)x;
}

// ---------------------------------------------------------------------------------------
// Normals (docs/format.md, Normals)
// ---------------------------------------------------------------------------------------

template <class F> struct Normal { F n[3]; F norm; };

// n = units * (2/255) - 1, then n/|n|; |n| < eps gives the zero vector (NaN stays NaN).
template <class F> VBK_HD Normal<F> unit_normal(F pr, F pg, F pb, F eps, bool flip_yz) {
    const F scale = (F)(2.0 / 255.0);
    F x = pr * scale - (F)1, y = pg * scale - (F)1, z = pb * scale - (F)1;
    Normal<F> out;
    out.norm = vsqrt(x * x + y * y + z * z);
    bool tiny = out.norm < eps;
    out.n[0] = tiny ? (F)0 : x / out.norm;
    out.n[1] = tiny ? (F)0 : y / out.norm;
    out.n[2] = tiny ? (F)0 : z / out.norm;
    if (flip_yz) {
        out.n[1] = out.n[1] * (F)-1;
        out.n[2] = out.n[2] * (F)-1;
    }
    return out;
}

// uint8 input: normalise the exact integer vector 2p - 255 instead of 2p/255 - 1, whose
// float32 rounding near grey (e.g. (127, 128, 128)) is a large part of the small vector and
// would leave the unit normal 1e-5 off. The squared length (<= 3 * 255^2) is exact; only the
// sqrt and the divisions round. |n| = |2p - 255| / 255.
template <class F> VBK_HD Normal<F> unit_normal_u8(u8 pr, u8 pg, u8 pb, F eps, bool flip_yz) {
    F x = (F)(2 * (int)pr - 255), y = (F)(2 * (int)pg - 255), z = (F)(2 * (int)pb - 255);
    F length = vsqrt(x * x + y * y + z * z);
    Normal<F> out;
    out.norm = length / (F)255;
    bool tiny = out.norm < eps;
    out.n[0] = tiny ? (F)0 : x / length;
    out.n[1] = tiny ? (F)0 : y / length;
    out.n[2] = tiny ? (F)0 : z / length;
    if (flip_yz) {
        out.n[1] = out.n[1] * (F)-1;
        out.n[2] = out.n[2] * (F)-1;
    }
    return out;
}

// The normal of the pixel whose channels are at px[0], px[c], px[2c].
template <class F, class T> VBK_HD Normal<F> normal_at(const T* px, i64 c, F eps, bool flip_yz) {
    return unit_normal(units<F>(px[0]), units<F>(px[c]), units<F>(px[2 * c]), eps, flip_yz);
}

template <class F> VBK_HD Normal<F> normal_at(const u8* px, i64 c, F eps, bool flip_yz) {
    return unit_normal_u8(px[0], px[c], px[2 * c], eps, flip_yz);
}

// Encoder: units = clamp(255*(n+1)/2, 0, 255) in float64 (after the convention flip).
VBK_HD double normal_units(double n) {
    double v = 255.0 * (n + 1.0) / 2.0;
    return v < 0.0 ? 0.0 : (v > 255.0 ? 255.0 : v);
}

// ---------------------------------------------------------------------------------------
// Segmentation (docs/format.md, Segmentation)
// ---------------------------------------------------------------------------------------

// ((dr^2 + dg^2) + db^2) in F: exact for integer units, so ties are decided identically.
template <class F> VBK_HD F palette_d2(F pr, F pg, F pb, F qr, F qg, F qb) {
    F dr = pr - qr, dg = pg - qg, db = pb - qb;
    return (dr * dr + dg * dg) + db * db;
}

// Nearest of `count` palette colours numbered from `base`, with a strict <, so scanning
// tiles in ascending order gives ties to the lowest index. best_d2 starts at +inf (or holds
// the running minimum of the previous tiles).
template <class F>
VBK_HD void nearest_in(F pr, F pg, F pb, const F* colours, int count, int base, int* best,
                       F* best_d2) {
    for (int j = 0; j < count; ++j) {
        F d2 = palette_d2(pr, pg, pb, colours[3 * j], colours[3 * j + 1], colours[3 * j + 2]);
        if (d2 < *best_d2) { *best_d2 = d2; *best = base + j; }
    }
}

template <class F> VBK_HD F infinity() { return (F)bits_to_f32(0x7f800000u); }

// Label to write: ignore_index for NaN pixels and (with a threshold) for dist2 > max_d2.
template <class F>
VBK_HD i64 label_of(int best, F d2, bool nan, bool has_max, F max_d2, i64 ignore_index) {
    if (nan || (has_max && d2 > max_d2)) return ignore_index;
    return (i64)best;
}

}  // namespace vbk
