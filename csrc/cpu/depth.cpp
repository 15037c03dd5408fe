// Depth ops of the compiled CPU backend (docs/format.md, Depth), over views of any strides.
//
// uint8 input takes a table path: the segment choice is computed exactly in integers, and
// t or depth depends only on (segment, varying channel value), so a 7x256 table replaces
// log/expm1 per pixel. t is computed here with the per-pixel functions (exact divisions);
// depth tables come from the caller, who computes them with the torch reference itself
// (vbkernels/cpu/depth.py), so uint8 depth is the reference's bit for bit.
#include <memory>
#include <mutex>
#include <vector>

#include "cpu_common.h"

using namespace vbk;
using namespace vbk::cpu;

namespace {

enum Quantity { T_VALUE, DEPTH_VALUE };

struct WalkTable {
    float value[7 * 256];  // t or depth at (k, p_a)
};

WalkTable walk_table(Quantity q, float neg_lam_c, float lam1, bool has_max, float max_depth) {
    WalkTable table;
    for (int k = 0; k < 7; ++k) {
        for (int pa = 0; pa < 256; ++pa) {
            Rgb<float> px;
            for (int ch = 0; ch < 3; ++ch) set_channel(px, ch, (u8)pa);
            float s, r;
            edge_position(k, px, &s, &r);
            float t = walk_t(k, s), v = t;
            if (q == DEPTH_VALUE) {
                v = inverse_power(t, walk_u(k, r), neg_lam_c, lam1);
                if (has_max) v = clamp_max(v, max_depth);
            }
            table.value[k * 256 + pa] = v;
        }
    }
    return table;
}

// Segment choice, table index and squared distance of one uint8 pixel, in integers.
inline int walk_index_u8(int r, int g, int b, int* d2) {
    int k = nearest_segment(r, g, b, d2);
    int channel = varying_channel(k);
    int pa = channel == 0 ? r : (channel == 1 ? g : b);
    return k * 256 + pa;
}

// The common case, contiguous HWC uint8 into contiguous float32, as a plain function so it
// can be compiled per instruction set. A block of pixels is deinterleaved, then the segment
// search runs branch-free: each squared distance is packed with its segment index as
// d2 * 8 + k, so the minimum key is the nearest segment with ties to the lowest k, exactly
// the strict-< scan of nearest_segment, and a plain integer min vectorises.
const int WALK_BLOCK = 256;

// Keep the smaller packed key and, with it, the value of that segment's varying channel.
VBK_INLINE void consider(int candidate, int value, int* key, int* pa) {
    bool closer = candidate < *key;
    *key = closer ? candidate : *key;
    *pa = closer ? value : *pa;
}

VBK_MULTIVERSION void walk_row_u8(const u8* px, i64 W, const float* table, float* out,
                                  float* distance) {
    int r[WALK_BLOCK], g[WALK_BLOCK], b[WALK_BLOCK], index[WALK_BLOCK], best_d2[WALK_BLOCK];
    for (i64 w0 = 0; w0 < W; w0 += WALK_BLOCK) {
        int count = W - w0 < WALK_BLOCK ? (int)(W - w0) : WALK_BLOCK;
        const u8* block = px + 3 * w0;
        for (int i = 0; i < count; ++i) {
            r[i] = block[3 * i];
            g[i] = block[3 * i + 1];
            b[i] = block[3 * i + 2];
        }
        for (int i = 0; i < count; ++i) {
            int lr = r[i] * r[i], lg = g[i] * g[i], lb = b[i] * b[i];
            int hr = (255 - r[i]) * (255 - r[i]), hg = (255 - g[i]) * (255 - g[i]);
            int hb = (255 - b[i]) * (255 - b[i]);
            int key = (lg + lb) * 8, pa = r[i];
            consider((hr + lb) * 8 + 1, g[i], &key, &pa);
            consider((hg + lb) * 8 + 2, r[i], &key, &pa);
            consider((lr + hg) * 8 + 3, b[i], &key, &pa);
            consider((lr + hb) * 8 + 4, g[i], &key, &pa);
            consider((lg + hb) * 8 + 5, r[i], &key, &pa);
            consider((hr + hb) * 8 + 6, g[i], &key, &pa);
            int k = key & 7;
            index[i] = k * 256 + pa;
            best_d2[i] = key >> 3;
        }
        for (int i = 0; i < count; ++i) out[w0 + i] = table[index[i]];
        if (distance) {
            for (int i = 0; i < count; ++i) distance[w0 + i] = sqrtf((float)best_d2[i]);
        }
    }
}

template <class TO>
void walk_rows_u8(const u8* rgb, const i64* rs, const i64* shape, const WalkTable& table,
                  TO* out, const i64* os, float* distance, const i64* es) {
    i64 N = shape[0], H = shape[1], W = shape[2];
    bool contiguous = std::is_same<TO, float>::value && rs[2] == 3 && rs[3] == 1 && os[2] == 1 &&
                      (!distance || es[2] == 1);
    for_rows(N, H, W, [&](i64 n, i64 h) {
        const u8* row = row_start(rgb, rs, n, h);
        TO* orow = row_start(out, os, n, h);
        float* drow = distance ? row_start(distance, es, n, h) : nullptr;
        if (contiguous) {
            walk_row_u8(row, W, table.value, (float*)orow, drow);
            return;
        }
        for (i64 w = 0; w < W; ++w) {
            const u8* px = row + w * rs[2];
            int d2;
            int index = walk_index_u8(px[0], px[rs[3]], px[2 * rs[3]], &d2);
            put(orow + w * os[2], table.value[index]);
            if (drow) drow[w * es[2]] = sqrtf((float)d2);
        }
    });
}

// Float input: the per-pixel functions exactly as the CUDA kernels run them.
template <class T, class TO>
void walk_rows_float(const T* rgb, const i64* rs, const i64* shape, Quantity q, TO* out,
                     const i64* os, float* distance, const i64* es, double neg_lam_c,
                     double lam1, bool has_max, double max_depth) {
    typedef typename Work<T>::type F;
    i64 N = shape[0], H = shape[1], W = shape[2];
    for_rows(N, H, W, [&](i64 n, i64 h) {
        const T* row = row_start(rgb, rs, n, h);
        TO* orow = row_start(out, os, n, h);
        float* drow = distance ? row_start(distance, es, n, h) : nullptr;
        for (i64 w = 0; w < W; ++w) {
            Rgb<F> px = load_rgb<F>(row + w * rs[2], rs[3]);
            Projection<F> proj = project(px);
            bool nan = px.nan;
            F v = walk_t(proj.k, proj.s);
            if (q == DEPTH_VALUE) {
                v = inverse_power(v, walk_u(proj.k, proj.r), (F)neg_lam_c, (F)lam1);
                if (has_max) v = clamp_max(v, (F)max_depth);
            }
            put(orow + w * os[2], nan ? quiet_nan<F>() : v);
            if (drow) put(drow + w * es[2], nan ? quiet_nan<F>() : vsqrt(proj.d2));
        }
    });
}

int walk_decode(const void* rgb, int rgb_dt, const i64* rs, const i64* shape, Quantity q,
                void* out, int out_dt, const i64* os, float* distance, const i64* es,
                double neg_lam_c, double lam1, bool has_max, double max_depth,
                const float* depth_table) {
    int inner = OK;
    int outer = with_image_type(rgb_dt, [&](auto in_tag) {
        typedef pointee<decltype(in_tag)> T;
        inner = with_f32_f64(out_dt, [&](auto out_tag) {
            typedef pointee<decltype(out_tag)> TO;
            if constexpr (std::is_same<T, u8>::value) {
                WalkTable table;
                if (depth_table) {
                    memcpy(table.value, depth_table, sizeof(table.value));
                } else {
                    table = walk_table(q, (float)neg_lam_c, (float)lam1, has_max, (float)max_depth);
                }
                walk_rows_u8((const u8*)rgb, rs, shape, table, (TO*)out, os, distance, es);
            } else {
                walk_rows_float((const T*)rgb, rs, shape, q, (TO*)out, os, distance, es,
                                neg_lam_c, lam1, has_max, max_depth);
            }
        });
    });
    return outer != OK ? outer : inner;
}

template <class TO> void store_point(const WalkPoint& p, TO* px, i64 c) {
    for (int ch = 0; ch < 3; ++ch) put(px + ch * c, p.v[ch]);
}

void store_point(const WalkPoint& p, u8* px, i64 c) {
    for (int ch = 0; ch < 3; ++ch) px[ch * c] = unit_to_u8(p.v[ch]);
}

// ---------------------------------------------------------------------------------------
// uint8 encoders as a search in a threshold table.
//
// The uint8 colour written for a value x (a depth, or t for hilbert_walk) is one of the
// 7*255+1 colours of the walk, and its position m (0..1785, 255 k plus the varying channel's
// distance from vertex k) never decreases as x grows: power_transform, the clamp, *7, floor,
// x - k, 255 * ... and rint are all monotone. So the colour is fixed by the 1785 thresholds
// T[m] = the smallest input value whose colour is at position >= m, found once per
// (lam, c, input precision) by evaluating the very per-pixel functions of the direct path
// (power_transform, walk_point, unit_to_u8) in a bisection over the input's own values.
// Per pixel that leaves a bucket lookup on the float32 bits of x and a comparison or two, no
// log1p/expm1, and the same bytes the direct path writes: checked for all 2^32 float32 bit
// patterns with the default lam, c (encode_depth and hilbert_walk), and in tests/test_csrc.py
// on and around every rounding boundary against the float64 points of the direct path.

const int WALK_CODES = 7 * 255 + 1;
const int KEY_SHIFT = 16;
const int KEYS = (0x7f800000 >> KEY_SHIFT) + 1;  // keys of +0 .. +inf

// The uint8 colour the direct path writes for x, and its walk position.
void direct_colour(double x, bool transform, double neg_lam_c, double lam1, u8 rgb[3]) {
    if (transform) x = power_transform(x, neg_lam_c, lam1);
    store_point(walk_point(x), rgb, 1);
}

int colour_position(const u8 rgb[3]) {
    for (int k = 0; k < 7; ++k) {
        int a = varying_channel(k);
        bool on_segment = true;
        for (int ch = 0; ch < 3; ++ch) {
            if (ch != a && rgb[ch] != 255 * vertex_bit(ch, k)) on_segment = false;
        }
        if (on_segment) return 255 * k + (rising(k) ? rgb[a] : 255 - rgb[a]);
    }
    return 0;  // not reached: every colour the walk writes lies on a segment
}

// Non-negative values of F in order, as their bit patterns.
template <class F> struct Ordered;
template <> struct Ordered<float> {
    typedef u32 Bits;
    static const Bits INF = 0x7f800000u;
    static double value(Bits b) { return (double)bits_to_f32(b); }
    static Bits bits(double x) { return f32_to_bits((float)x); }
};
template <> struct Ordered<double> {
    typedef unsigned long long Bits;
    static const Bits INF = 0x7ff0000000000000ull;
    static double value(Bits b) {
        double x;
        memcpy(&x, &b, 8);
        return x;
    }
    static Bits bits(double x) {
        Bits b;
        memcpy(&b, &x, 8);
        return b;
    }
};

inline int key_of(double x) { return (int)(f32_to_bits((float)x) >> KEY_SHIFT); }

// F: float for float32/float16/bfloat16 input (all exactly float32 values), double for
// float64 input.
template <class F> struct EncodeTable {
    bool transform;
    double neg_lam_c, lam1;
    int run;                   // most thresholds that share one key
    std::vector<F> threshold;  // [m]: smallest x at position >= m; NaN from 1786 on
    i32 start[KEYS];           // number of thresholds in lower keys
    u8 colour[WALK_CODES][4];  // RGB at each position, padded to 4 bytes
};

// Smallest non-negative F at position >= m (1 <= m <= 1785), by galloping from the
// closed-form inverse at the rounding boundary, then bisecting. pos(+0) = 0 < m and
// pos(+inf) = 1785 >= m bracket it.
template <class F>
F find_threshold(int m, bool transform, double neg_lam_c, double lam1) {
    typedef Ordered<F> O;
    typedef typename O::Bits B;
    auto reaches = [&](B b) {
        u8 rgb[3];
        direct_colour(O::value(b), transform, neg_lam_c, lam1, rgb);
        return colour_position(rgb) >= m;
    };
    double t = (m - 0.5) / (double)(WALK_CODES - 1);
    double guess = transform ? neg_lam_c * expm1(log1p(-t) / lam1) : t;
    B lo = 0, hi = O::INF;
    B b = (guess > 0.0 && guess < O::value(O::INF)) ? O::bits(guess) : O::INF / 2;
    if (b == 0) b = 1;
    if (b >= O::INF) b = O::INF - 1;
    if (reaches(b)) {
        hi = b;
        for (B step = 1;; step *= 2) {
            B c = hi - lo > step ? hi - step : lo;
            if (c == lo) break;
            if (!reaches(c)) { lo = c; break; }
            hi = c;
        }
    } else {
        lo = b;
        for (B step = 1;; step *= 2) {
            B c = hi - lo > step ? lo + step : hi;
            if (c == hi) break;
            if (reaches(c)) { hi = c; break; }
            lo = c;
        }
    }
    while (hi - lo > 1) {
        B mid = lo + (hi - lo) / 2;
        if (reaches(mid)) hi = mid; else lo = mid;
    }
    return (F)O::value(hi);
}

const int MAX_RUN = 16;  // thresholds a branch-free lookup compares; more use a scan

template <class F>
std::unique_ptr<EncodeTable<F>> build_encode_table(bool transform, double neg_lam_c,
                                                   double lam1) {
    std::unique_ptr<EncodeTable<F>> table(new EncodeTable<F>);
    table->transform = transform;
    table->neg_lam_c = neg_lam_c;
    table->lam1 = lam1;
    std::vector<F>& thr = table->threshold;
    thr.assign(WALK_CODES + MAX_RUN + 1, quiet_nan<F>());  // NaN: no value passes it
    thr[0] = (F)0;
    for (int m = 1; m < WALK_CODES; ++m) {
        F x = find_threshold<F>(m, transform, neg_lam_c, lam1);
        // Keep the table sorted even if a library function were not monotone somewhere.
        thr[m] = x < thr[m - 1] ? thr[m - 1] : x;
    }
    int m = 0;
    table->run = 0;
    for (int key = 0; key < KEYS; ++key) {
        while (m + 1 < WALK_CODES && key_of(thr[m + 1]) < key) ++m;
        table->start[key] = m;
        int last = m;
        while (last + 1 < WALK_CODES && key_of(thr[last + 1]) == key) ++last;
        if (last - m > table->run) table->run = last - m;
    }
    for (int p = 0; p < WALK_CODES; ++p) {
        int k = p / 255 > 6 ? 6 : p / 255, v = p - 255 * k, a = varying_channel(k);
        for (int ch = 0; ch < 3; ++ch) table->colour[p][ch] = (u8)(255 * vertex_bit(ch, k));
        table->colour[p][a] = (u8)(rising(k) ? v : 255 - v);
        table->colour[p][3] = 0;
    }
    return table;
}

// Tables of the last few parameter sets, built once (a few milliseconds) and shared by
// every thread and call: a video loop encodes each frame with the same lam and c.
template <class F>
std::shared_ptr<const EncodeTable<F>> encode_table(bool transform, double neg_lam_c,
                                                   double lam1) {
    static std::mutex mutex;
    static std::shared_ptr<const EncodeTable<F>> cache[8];
    static int next = 0;
    std::lock_guard<std::mutex> lock(mutex);
    for (const auto& entry : cache) {
        if (entry && entry->transform == transform &&
            (!transform || (entry->neg_lam_c == neg_lam_c && entry->lam1 == lam1))) {
            return entry;
        }
    }
    std::shared_ptr<const EncodeTable<F>> table =
        build_encode_table<F>(transform, neg_lam_c, lam1);
    cache[next] = table;
    next = (next + 1) % 8;
    return table;
}

// Walk position of x: 0 for x <= 0 and NaN (the direct path writes black for both). The
// thresholds of x's key are start + 1 .. start + run (sorted, NaN past the end), so the
// position is start plus how many of them x reaches.
template <int RUN, class F>
VBK_INLINE int position_of(const i32* start, const F* thr, int run, F x) {
    bool positive = x > (F)0;
    int m = start[positive ? key_of(x) : 0];
    int add = 0;
    if (RUN > 0) {
        for (int r = 1; r <= RUN; ++r) add += x >= thr[m + r] ? 1 : 0;
    } else {
        for (int r = 1; r <= run; ++r) add += x >= thr[m + r] ? 1 : 0;
    }
    return positive ? m + add : 0;
}

// Positions of a contiguous float32 run, compiled per instruction set.
template <int RUN>
VBK_MULTIVERSION void positions_f32(const float* x, int count, const i32* start,
                                    const float* thr, int run, i32* out) {
    for (int i = 0; i < count; ++i) out[i] = position_of<RUN>(start, thr, run, x[i]);
}

void positions_f32_any(const float* x, int count, const EncodeTable<float>& table, i32* out) {
    const i32* start = table.start;
    const float* thr = table.threshold.data();
    if (table.run <= 4) positions_f32<4>(x, count, start, thr, 4, out);
    else if (table.run <= 8) positions_f32<8>(x, count, start, thr, 8, out);
    else if (table.run <= MAX_RUN) positions_f32<MAX_RUN>(x, count, start, thr, MAX_RUN, out);
    else positions_f32<0>(x, count, start, thr, table.run, out);
}

template <class T, class F>
void encode_rows_u8(const T* src, const i64* ss, const i64* shape, u8* rgb, const i64* rs,
                    const EncodeTable<F>& table) {
    bool packed = rs[2] == 3 && rs[3] == 1;
    const int BLOCK = 256;
    for_rows(shape[0], shape[1], shape[2], [&](i64 n, i64 h) {
        const T* row = row_start(src, ss, n, h);
        u8* orow = row_start(rgb, rs, n, h);
        i64 W = shape[2], step = ss[2];
        F x[BLOCK];
        i32 pos[BLOCK];
        for (i64 w0 = 0; w0 < W; w0 += BLOCK) {
            int count = W - w0 < BLOCK ? (int)(W - w0) : BLOCK;
            const F* xs = x;
            if (std::is_same<T, F>::value && step == 1) {
                xs = (const F*)(row + w0);
            } else {
                for (int i = 0; i < count; ++i) x[i] = (F)widen(row[(w0 + i) * step]);
            }
            if constexpr (std::is_same<F, float>::value) {
                positions_f32_any(xs, count, table, pos);
            } else {
                for (int i = 0; i < count; ++i) {
                    pos[i] = position_of<0>(table.start, table.threshold.data(), table.run, xs[i]);
                }
            }
            u8* out = orow + w0 * rs[2];
            if (packed) {
                // 4-byte stores, each next pixel overwriting the spare byte; 3 for the last.
                for (int i = 0; i + 1 < count; ++i) memcpy(out + 3 * i, table.colour[pos[i]], 4);
                memcpy(out + 3 * (count - 1), table.colour[pos[count - 1]], 3);
            } else {
                for (int i = 0; i < count; ++i) {
                    const u8* c = table.colour[pos[i]];
                    u8* px = out + i * rs[2];
                    px[0] = c[0];
                    px[rs[3]] = c[1];
                    px[2 * rs[3]] = c[2];
                }
            }
        }
    });
}

// hilbert_walk (transform = false) and encode_depth (transform = true).
int walk_encode(const void* src, int src_dt, const i64* ss, const i64* shape, void* rgb,
                int rgb_dt, const i64* rs, bool transform, double neg_lam_c, double lam1) {
    int inner = OK;
    int outer = with_float_type(src_dt, [&](auto in_tag) {
        typedef pointee<decltype(in_tag)> T;
        if (rgb_dt == U8) {
            typedef typename Work<T>::type F;
            auto table = encode_table<F>(transform, neg_lam_c, lam1);
            encode_rows_u8((const T*)src, ss, shape, (u8*)rgb, rs, *table);
            return;
        }
        inner = with_image_type(rgb_dt, [&](auto out_tag) {
            typedef pointee<decltype(out_tag)> TO;
            for_rows(shape[0], shape[1], shape[2], [&](i64 n, i64 h) {
                const T* row = row_start((const T*)src, ss, n, h);
                TO* orow = row_start((TO*)rgb, rs, n, h);
                for (i64 w = 0; w < shape[2]; ++w) {
                    double x = (double)widen(row[w * ss[2]]);
                    if (transform) x = power_transform(x, neg_lam_c, lam1);
                    store_point(walk_point(x), orow + w * rs[2], rs[3]);
                }
            });
        });
    });
    return outer != OK ? outer : inner;
}

}  // namespace

VBK_EXPORT int vbk_hilbert_project(const void* rgb, int rgb_dt, const i64* rs, const i64* shape,
                                   void* t, int t_dt, const i64* ts) {
    return walk_decode(rgb, rgb_dt, rs, shape, T_VALUE, t, t_dt, ts, nullptr, nullptr, 0.0, 0.0,
                       false, 0.0, nullptr);
}

// table: for uint8 input, the float32 depth at (segment k, varying channel value) as
// k * 256 + value (7 x 256), or null to compute it here.
VBK_EXPORT int vbk_decode_depth(const void* rgb, int rgb_dt, const i64* rs, const i64* shape,
                                void* depth, int depth_dt, const i64* ds, float* distance,
                                const i64* es, double neg_lam_c, double lam1, int has_max,
                                double max_depth, const float* table) {
    return walk_decode(rgb, rgb_dt, rs, shape, DEPTH_VALUE, depth, depth_dt, ds, distance, es,
                       neg_lam_c, lam1, has_max != 0, max_depth, table);
}

VBK_EXPORT int vbk_hilbert_walk(const void* t, int t_dt, const i64* ts, const i64* shape,
                                void* rgb, int rgb_dt, const i64* rs) {
    return walk_encode(t, t_dt, ts, shape, rgb, rgb_dt, rs, false, 0.0, 0.0);
}

VBK_EXPORT int vbk_encode_depth(const void* depth, int depth_dt, const i64* ds, const i64* shape,
                                void* rgb, int rgb_dt, const i64* rs, double neg_lam_c,
                                double lam1) {
    return walk_encode(depth, depth_dt, ds, shape, rgb, rgb_dt, rs, true, neg_lam_c, lam1);
}
