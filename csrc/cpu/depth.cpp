// Depth ops of the compiled CPU backend (SPEC §2), over views of any strides.
//
// uint8 input takes a table path: the segment choice is computed exactly in integers, and
// t or depth depends only on (segment, varying channel value), so a 7x256 table computed
// per call with the very same per-pixel functions replaces log/expm1 per pixel without
// changing a single bit of the result.
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
                double neg_lam_c, double lam1, bool has_max, double max_depth) {
    int inner = OK;
    int outer = with_image_type(rgb_dt, [&](auto in_tag) {
        typedef pointee<decltype(in_tag)> T;
        inner = with_f32_f64(out_dt, [&](auto out_tag) {
            typedef pointee<decltype(out_tag)> TO;
            if constexpr (std::is_same<T, u8>::value) {
                WalkTable table =
                    walk_table(q, (float)neg_lam_c, (float)lam1, has_max, (float)max_depth);
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

// hilbert_walk (transform = false) and encode_depth (transform = true).
int walk_encode(const void* src, int src_dt, const i64* ss, const i64* shape, void* rgb,
                int rgb_dt, const i64* rs, bool transform, double neg_lam_c, double lam1) {
    int inner = OK;
    int outer = with_float_type(src_dt, [&](auto in_tag) {
        typedef pointee<decltype(in_tag)> T;
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
                       false, 0.0);
}

VBK_EXPORT int vbk_decode_depth(const void* rgb, int rgb_dt, const i64* rs, const i64* shape,
                                void* depth, int depth_dt, const i64* ds, float* distance,
                                const i64* es, double neg_lam_c, double lam1, int has_max,
                                double max_depth) {
    return walk_decode(rgb, rgb_dt, rs, shape, DEPTH_VALUE, depth, depth_dt, ds, distance, es,
                       neg_lam_c, lam1, has_max != 0, max_depth);
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
