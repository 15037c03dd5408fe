// Colormap inversion of the compiled CPU backend (docs/format.md, Colormaps): each pixel's
// nearest point on the polyline through a colormap's colours, over views of any strides.
//
// The per-segment formulas, their order of operations and the tie rule are the contract in
// vbkernels/reference/colormap.py, written out operation for operation (built with
// -ffp-contract=off, so no a*b+c becomes an fma). For uint8 and float64 images the work is
// float64, where every quantity before the two divisions is an exact integer, so t and the
// distance are bit-identical to the torch reference; other float images work in float32 as
// the reference does.
//
// Two entry points: vbk_decode_colormap searches every segment for every pixel (any image
// dtype); vbk_colormap_table_decode (uint8 only) answers each pixel from a caller-owned
// 2^24-entry colour -> (t, distance) table filled lazily, computing only the colours no
// earlier call has seen with the same search, so both give the same bits.
#include <omp.h>

#include <string.h>

#include <vector>

#include "cpu_common.h"

using namespace vbk;
using namespace vbk::cpu;

namespace {

typedef unsigned long long u64;

// Pixels searched together: the segment loop runs outside, so each segment's constants are
// loaded once per group and the lane loop vectorises.
const int LANES = 8;

// The polyline's segments in the work dtype F, as the reference derives them from the
// vertices and positions converted to F.
template <class F> struct Segments {
    int count;
    std::vector<F> a, d, length2, safe_length2, start, span;

    Segments(const double* colours, const double* positions, int vertices)
        : count(vertices - 1), a(3 * count), d(3 * count), length2(count),
          safe_length2(count), start(count), span(count) {
        for (int j = 0; j < count; ++j) {
            for (int ch = 0; ch < 3; ++ch) {
                a[3 * j + ch] = (F)colours[3 * j + ch];
                d[3 * j + ch] = (F)colours[3 * j + 3 + ch] - (F)colours[3 * j + ch];
            }
            const F* dj = &d[3 * j];
            length2[j] = (dj[0] * dj[0] + dj[1] * dj[1]) + dj[2] * dj[2];
            safe_length2[j] = length2[j] > (F)0 ? length2[j] : (F)1;
            start[j] = (F)positions[j];
            span[j] = (F)positions[j + 1] - (F)positions[j];
        }
    }
};

// For LANES pixels: the smallest squared distance over all segments (strict <, ascending j:
// ties to the lowest segment), that segment's index (as F, exact) and its dot product.
template <class F>
VBK_INLINE void nearest_lanes(const F* pr, const F* pg, const F* pb, const Segments<F>& seg,
                              F* best_d2_out, F* best_j_out, F* best_dot_out) {
    F r[LANES], g[LANES], b[LANES], best_d2[LANES], best_j[LANES], best_dot[LANES];
    for (int i = 0; i < LANES; ++i) {
        r[i] = pr[i];
        g[i] = pg[i];
        b[i] = pb[i];
        best_d2[i] = infinity<F>();
        best_j[i] = 0;
        best_dot[i] = 0;
    }
    const F* a = seg.a.data();
    const F* d = seg.d.data();
    for (int j = 0; j < seg.count; ++j) {
        F ar = a[3 * j], ag = a[3 * j + 1], ab = a[3 * j + 2];
        F dr = d[3 * j], dg = d[3 * j + 1], db = d[3 * j + 2];
        F length2 = seg.length2[j], safe = seg.safe_length2[j], fj = (F)j;
        for (int i = 0; i < LANES; ++i) {
            F er = r[i] - ar, eg = g[i] - ag, eb = b[i] - ab;
            F dot = (er * dr + eg * dg) + eb * db;
            F ee = (er * er + eg * eg) + eb * eb;
            F cross = ee * length2 - dot * dot;
            F inner = (cross > (F)0 ? cross : (F)0) / safe;
            F after = (ee - (F)2 * dot) + length2;
            after = after > (F)0 ? after : (F)0;  // float rounding can dip below 0 at a vertex
            F d2 = dot <= (F)0 ? ee : (dot >= length2 ? after : inner);
            bool closer = d2 < best_d2[i];
            best_d2[i] = closer ? d2 : best_d2[i];
            best_j[i] = closer ? fj : best_j[i];
            best_dot[i] = closer ? dot : best_dot[i];
        }
    }
    for (int i = 0; i < LANES; ++i) {
        best_d2_out[i] = best_d2[i];
        best_j_out[i] = best_j[i];
        best_dot_out[i] = best_dot[i];
    }
}

VBK_MULTIVERSION void nearest_f32(const float* pr, const float* pg, const float* pb,
                                  const Segments<float>& seg, float* d2, float* j, float* dot) {
    nearest_lanes(pr, pg, pb, seg, d2, j, dot);
}

VBK_MULTIVERSION void nearest_f64(const double* pr, const double* pg, const double* pb,
                                  const Segments<double>& seg, double* d2, double* j,
                                  double* dot) {
    nearest_lanes(pr, pg, pb, seg, d2, j, dot);
}

inline void nearest(const float* pr, const float* pg, const float* pb, const Segments<float>& seg,
                    float* d2, float* j, float* dot) {
    nearest_f32(pr, pg, pb, seg, d2, j, dot);
}

inline void nearest(const double* pr, const double* pg, const double* pb,
                    const Segments<double>& seg, double* d2, double* j, double* dot) {
    nearest_f64(pr, pg, pb, seg, d2, j, dot);
}

// t on the chosen segment, in F: s from the same case split as the search.
template <class F> F position(const Segments<F>& seg, int j, F dot) {
    F s = dot <= (F)0 ? (F)0 : (dot >= seg.length2[j] ? (F)1 : dot / seg.safe_length2[j]);
    return seg.start[j] + s * seg.span[j];
}

struct Threshold {
    bool on;
    double max_distance;  // float32-representable: comparing in double equals float32
    bool drops(float distance) const { return on && (double)distance > max_distance; }
};

// t dtype: float64 for float64 images, float32 otherwise.
template <class T> struct TOut { typedef float type; };
template <> struct TOut<double> { typedef double type; };

// Work dtype of the search: float64 for uint8 (exact integer distances) and float64 images.
template <class T> struct SearchWork { typedef typename Work<T>::type type; };
template <> struct SearchWork<u8> { typedef double type; };

template <class T, class F>
void decode_rows(const T* rgb, const i64* rs, const i64* shape, const Segments<F>& seg,
                 typename TOut<T>::type* t, const i64* ts, float* distance, const i64* ds,
                 Threshold threshold) {
    for_rows(shape[0], shape[1], shape[2], [&](i64 n, i64 h) {
        const T* row = row_start(rgb, rs, n, h);
        auto* trow = row_start(t, ts, n, h);
        float* drow = distance ? row_start(distance, ds, n, h) : nullptr;
        F pr[LANES], pg[LANES], pb[LANES], best_d2[LANES], best_j[LANES], best_dot[LANES];
        for (i64 w0 = 0; w0 < shape[2]; w0 += LANES) {
            int count = shape[2] - w0 < LANES ? (int)(shape[2] - w0) : LANES;
            for (int i = 0; i < LANES; ++i) {
                const T* px = row + (w0 + (i < count ? i : 0)) * rs[2];
                pr[i] = units<F>(px[0]);
                pg[i] = units<F>(px[rs[3]]);
                pb[i] = units<F>(px[2 * rs[3]]);
            }
            nearest(pr, pg, pb, seg, best_d2, best_j, best_dot);
            for (int i = 0; i < count; ++i) {
                bool nan = is_nan(pr[i]) || is_nan(pg[i]) || is_nan(pb[i]);
                float dist = nan ? quiet_nan<float>() : (float)vsqrt(best_d2[i]);
                F value = position(seg, (int)best_j[i], best_dot[i]);
                put(trow + (w0 + i) * ts[2],
                    nan || threshold.drops(dist) ? quiet_nan<F>() : value);
                if (drow) drow[(w0 + i) * ds[2]] = dist;
            }
        }
    });
}

template <class F>
void decode_any(const void* rgb, int rgb_dt, const i64* rs, const i64* shape,
                const double* colours, const double* positions, int vertices, void* t,
                const i64* ts, float* distance, const i64* ds, Threshold threshold, int* status) {
    Segments<F> seg(colours, positions, vertices);
    *status = with_image_type(rgb_dt, [&](auto tag) {
        typedef pointee<decltype(tag)> T;
        // Each image dtype is instantiated with its own work dtype only.
        if constexpr (std::is_same<typename SearchWork<T>::type, F>::value) {
            decode_rows((const T*)rgb, rs, shape, seg, (typename TOut<T>::type*)t, ts, distance,
                        ds, threshold);
        }
    });
}

// The table's state: entries are valid where `filled` is set; `claimed` marks the colours a
// call has taken on to compute (equal to `filled` between calls).
struct TableState {
    float* table;  // (t, distance) pairs by colour key
    u64* filled;
    u64* claimed;
};

// Claim a colour for this call: the thread whose atomic or sets its bit collects it, once.
__attribute__((noinline)) void claim(u64* claimed, u32 key, std::vector<u32>& found) {
    u64 bit = 1ull << (key & 63);
    u64* word = claimed + (key >> 6);
    if (__atomic_load_n(word, __ATOMIC_RELAXED) & bit) return;
    if (!(__atomic_fetch_or(word, bit, __ATOMIC_RELAXED) & bit)) found.push_back(key);
}

// Colour key of a uint8 pixel: r | (g << 8) | (b << 16), its three bytes read as a
// little-endian integer.
VBK_INLINE u32 colour_key(const u8* px, i64 channel_stride) {
    return (u32)px[0] | ((u32)px[channel_stride] << 8) | ((u32)px[2 * channel_stride] << 16);
}

// Writes one row's t and distance from the table; a pixel whose colour is not filled yet is
// skipped, and its colour claimed (an atomic or, so exactly one thread collects it) into
// `found`. Returns whether every pixel of the row was written. Packed RGB rows (Packed) read
// each key with one 4-byte load, except the last pixel, whose fourth byte may lie outside.
template <bool Packed>
bool gather_row(const u8* px, const i64* rs, i64 W, const TableState& st, Threshold threshold,
                float* trow, i64 ts, float* drow, i64 ds, std::vector<u32>& found) {
    const float* table = st.table;
    const u64* filled = st.filled;
    const i64 step = Packed ? 3 : rs[2], cs = Packed ? 1 : rs[3];
    bool complete = true;
    u32 last = 0xffffffffu, last_claimed = 0xffffffffu;  // no colour key is ~0
    float value = 0, dist = 0;
    for (i64 w = 0; w < W; ++w, px += step) {
        u32 key;
        if (Packed && w + 1 < W) {
            memcpy(&key, px, 4);
            key &= 0xffffffu;
        } else {
            key = colour_key(px, cs);
        }
        if (key != last) {  // painted images run one colour over many pixels
            if (!((filled[key >> 6] >> (key & 63)) & 1)) {
                complete = false;
                if (key != last_claimed) claim(st.claimed, key, found);
                last_claimed = key;
                continue;
            }
            last = key;
            dist = table[2 * (i64)key + 1];
            value = threshold.drops(dist) ? quiet_nan<float>() : table[2 * (i64)key];
        }
        trow[w * ts] = value;
        if (drow) drow[w * ds] = dist;
    }
    return complete;
}

// Fill the table's (t, distance) pairs for `keys`, LANES colours per search.
void fill_table(const std::vector<u32>& keys, const Segments<double>& seg, float* table) {
    i64 groups = ((i64)keys.size() + LANES - 1) / LANES;
#pragma omp parallel for schedule(dynamic, 16) if (groups * seg.count >= 65536)
    for (i64 gi = 0; gi < groups; ++gi) {
        double pr[LANES], pg[LANES], pb[LANES], best_d2[LANES], best_j[LANES], best_dot[LANES];
        i64 first = gi * LANES;
        int count = (i64)keys.size() - first < LANES ? (int)((i64)keys.size() - first) : LANES;
        for (int i = 0; i < LANES; ++i) {
            u32 key = keys[first + (i < count ? i : 0)];
            pr[i] = (double)(key & 255);
            pg[i] = (double)((key >> 8) & 255);
            pb[i] = (double)(key >> 16);
        }
        nearest(pr, pg, pb, seg, best_d2, best_j, best_dot);
        for (int i = 0; i < count; ++i) {
            u32 key = keys[first + i];
            table[2 * (i64)key] = (float)position(seg, (int)best_j[i], best_dot[i]);
            table[2 * (i64)key + 1] = (float)vsqrt(best_d2[i]);
        }
    }
}

}  // namespace

VBK_EXPORT int vbk_decode_colormap(const void* rgb, int rgb_dt, const i64* rs, const i64* shape,
                                   const double* colours, const double* positions, int vertices,
                                   void* t, const i64* ts, float* distance, const i64* ds,
                                   int has_max, double max_distance) {
    Threshold threshold = {has_max != 0, max_distance};
    int status = OK;
    if (rgb_dt == U8 || rgb_dt == F64) {
        decode_any<double>(rgb, rgb_dt, rs, shape, colours, positions, vertices, t, ts, distance,
                           ds, threshold, &status);
    } else {
        decode_any<float>(rgb, rgb_dt, rs, shape, colours, positions, vertices, t, ts, distance,
                          ds, threshold, &status);
    }
    return status;
}

// uint8 images through a 2^24-entry table of (t, distance) float32 pairs indexed by colour
// key r | (g << 8) | (b << 16), valid where the bit of `filled` is set; `claimed` (2^24 bits
// too) must equal `filled` on entry and does on return. One pass writes every pixel whose
// colour is filled and collects the others; their colours are computed and their rows
// written again. *computed = how many colours were new. Callers must not run two calls on
// the same table at once.
VBK_EXPORT int vbk_colormap_table_decode(const u8* rgb, const i64* rs, const i64* shape,
                                         const double* colours, const double* positions,
                                         int vertices, float* table, u64* filled, u64* claimed,
                                         float* t, const i64* ts, float* distance, const i64* ds,
                                         int has_max, double max_distance, i64* computed) {
    Threshold threshold = {has_max != 0, max_distance};
    TableState st = {table, filled, claimed};
    i64 rows = shape[0] * shape[1], W = shape[2];
    bool parallel = rows > 1 && rows * W >= 32768;
    int threads = omp_get_max_threads();
    std::vector<std::vector<u32>> found(threads);
    std::vector<std::vector<i64>> pending(threads);
    const bool packed = rs[2] == 3 && rs[3] == 1;
    auto gather = [&](i64 row, std::vector<u32>& into) {
        i64 n = row / shape[1], h = row % shape[1];
        const u8* px = row_start(rgb, rs, n, h);
        float* trow = row_start(t, ts, n, h);
        float* drow = distance ? row_start(distance, ds, n, h) : nullptr;
        i64 dstep = distance ? ds[2] : 0;
        return packed ? gather_row<true>(px, rs, W, st, threshold, trow, ts[2], drow, dstep, into)
                      : gather_row<false>(px, rs, W, st, threshold, trow, ts[2], drow, dstep, into);
    };
#pragma omp parallel if (parallel)
    {
        int me = omp_get_thread_num();
#pragma omp for schedule(static)
        for (i64 row = 0; row < rows; ++row)
            if (!gather(row, found[me])) pending[me].push_back(row);
    }
    std::vector<u32> keys;
    std::vector<i64> again;
    for (int i = 0; i < threads; ++i) {
        keys.insert(keys.end(), found[i].begin(), found[i].end());
        again.insert(again.end(), pending[i].begin(), pending[i].end());
    }
    *computed = (i64)keys.size();
    if (again.empty()) return OK;
    fill_table(keys, Segments<double>(colours, positions, vertices), table);
    for (u32 key : keys) filled[key >> 6] |= 1ull << (key & 63);
    std::vector<u32> none;  // every colour is filled now: nothing more is collected
#pragma omp parallel for schedule(static) firstprivate(none) if (parallel)
    for (i64 i = 0; i < (i64)again.size(); ++i) gather(again[i], none);
    return OK;
}
