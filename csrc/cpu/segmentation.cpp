// Segmentation ops of the compiled CPU backend (docs/format.md, Segmentation), over views of any strides.
//
// Pixels are processed in blocks of BLOCK: the palette loop runs outside and the pixel
// loop inside, so each palette colour is loaded once per block and the distance/compare/
// select of BLOCK pixels vectorises. For uint8 input the caller may pass a 2^24-entry
// table of labels (built by vbk_build_label_table with the same block code), turning the
// search into one lookup; the squared distance is then recomputed from the chosen colour,
// the same float operations as the search, so labels and distances are unchanged.
#include "cpu_common.h"

using namespace vbk;
using namespace vbk::cpu;

namespace {

const int BLOCK = 64;

// Lanes of pixels searched together: their coordinates and running minima fit in vector
// registers for the whole palette loop (2 AVX2 registers per array of floats).
const int LANES = 16;

// Nearest colour for BLOCK pixels. Sub-blocks of LANES pixels scan the whole palette (which
// stays in L1) with their state in registers; local arrays tell the compiler nothing else
// aliases them.
template <class F>
VBK_INLINE void nearest_block(const F* pr, const F* pg, const F* pb, const F* palette, int K,
                              F* best_d2_out, int* best_out) {
    for (int i0 = 0; i0 < BLOCK; i0 += LANES) {
        F r[LANES], g[LANES], b[LANES], best_d2[LANES];
        int best[LANES];
        for (int i = 0; i < LANES; ++i) {
            r[i] = pr[i0 + i];
            g[i] = pg[i0 + i];
            b[i] = pb[i0 + i];
            best_d2[i] = infinity<F>();
            best[i] = 0;
        }
        for (int j = 0; j < K; ++j) {
            F qr = palette[3 * j], qg = palette[3 * j + 1], qb = palette[3 * j + 2];
            for (int i = 0; i < LANES; ++i) {
                F d2 = palette_d2(r[i], g[i], b[i], qr, qg, qb);
                // Select with a mask and a min rather than `if (closer)`: GCC turns the latter
                // into masked stores behind a branch, microcoded and slow on AMD cores.
                int closer = -(int)(d2 < best_d2[i]);
                best[i] = (best[i] & ~closer) | (j & closer);
                best_d2[i] = d2 < best_d2[i] ? d2 : best_d2[i];
            }
        }
        for (int i = 0; i < LANES; ++i) {
            best_d2_out[i0 + i] = best_d2[i];
            best_out[i0 + i] = best[i];
        }
    }
}

VBK_MULTIVERSION void nearest_block_f32(const float* pr, const float* pg, const float* pb,
                                        const float* palette, int K, float* best_d2, int* best) {
    nearest_block(pr, pg, pb, palette, K, best_d2, best);
}

VBK_MULTIVERSION void nearest_block_f64(const double* pr, const double* pg, const double* pb,
                                        const double* palette, int K, double* best_d2,
                                        int* best) {
    nearest_block(pr, pg, pb, palette, K, best_d2, best);
}

inline void nearest_block_any(const float* pr, const float* pg, const float* pb,
                              const float* palette, int K, float* best_d2, int* best) {
    nearest_block_f32(pr, pg, pb, palette, K, best_d2, best);
}

inline void nearest_block_any(const double* pr, const double* pg, const double* pb,
                              const double* palette, int K, double* best_d2, int* best) {
    nearest_block_f64(pr, pg, pb, palette, K, best_d2, best);
}

struct SegArgs {
    int K;
    bool has_max;
    double max_d2;
    i64 ignore_index;
};

template <class T, class TL>
void decode_rows(const T* rgb, const i64* rs, const i64* shape,
                 const typename Work<T>::type* palette, const u16* table, const SegArgs& a,
                 TL* labels, const i64* ls, float* distance, const i64* es) {
    typedef typename Work<T>::type F;
    const bool contiguous_u8 = std::is_same<T, u8>::value && rs[2] == 3 && rs[3] == 1;
    for_rows(shape[0], shape[1], shape[2], [&](i64 n, i64 h) {
        const T* row = row_start(rgb, rs, n, h);
        TL* lrow = row_start(labels, ls, n, h);
        float* drow = distance ? row_start(distance, es, n, h) : nullptr;
        F pr[BLOCK], pg[BLOCK], pb[BLOCK], best_d2[BLOCK];
        int best[BLOCK];
        for (i64 w0 = 0; w0 < shape[2]; w0 += BLOCK) {
            int count = shape[2] - w0 < BLOCK ? (int)(shape[2] - w0) : BLOCK;
            if (contiguous_u8) {
                const u8* px = (const u8*)row + 3 * w0;
                for (int i = 0; i < count; ++i) {
                    pr[i] = (F)px[3 * i];
                    pg[i] = (F)px[3 * i + 1];
                    pb[i] = (F)px[3 * i + 2];
                }
                for (int i = count; i < BLOCK; ++i) pr[i] = pg[i] = pb[i] = 0;
            } else {
                for (int i = 0; i < BLOCK; ++i) {
                    const T* px = row + (w0 + (i < count ? i : 0)) * rs[2];
                    pr[i] = units<F>(px[0]);
                    pg[i] = units<F>(px[rs[3]]);
                    pb[i] = units<F>(px[2 * rs[3]]);
                }
            }
            if (table) {
                // Only ever passed for uint8 input, whose units are exact integers.
                for (int i = 0; i < count; ++i) {
                    int j = table[((int)pr[i] << 16) | ((int)pg[i] << 8) | (int)pb[i]];
                    best[i] = j;
                    best_d2[i] = palette_d2(pr[i], pg[i], pb[i], palette[3 * j],
                                            palette[3 * j + 1], palette[3 * j + 2]);
                }
            } else {
                nearest_block_any(pr, pg, pb, palette, a.K, best_d2, best);
            }
            for (int i = 0; i < count; ++i) {
                bool nan = is_nan(pr[i]) || is_nan(pg[i]) || is_nan(pb[i]);
                lrow[(w0 + i) * ls[2]] = (TL)label_of(best[i], best_d2[i], nan, a.has_max,
                                                      (F)a.max_d2, a.ignore_index);
                if (drow) put(drow + (w0 + i) * es[2], nan ? quiet_nan<F>() : vsqrt(best_d2[i]));
            }
        }
    });
}

}  // namespace

VBK_EXPORT int vbk_decode_segmentation(const void* rgb, int rgb_dt, const i64* rs,
                                       const i64* shape, const void* palette, int K,
                                       const u16* table, void* labels, int labels_dt,
                                       const i64* ls, float* distance, const i64* es,
                                       int has_max, double max_d2, i64 ignore_index) {
    SegArgs args = {K, has_max != 0, max_d2, ignore_index};
    if (table && rgb_dt != U8) return BAD_DTYPE;
    int inner = OK;
    int outer = with_image_type(rgb_dt, [&](auto in_tag) {
        typedef pointee<decltype(in_tag)> T;
        typedef typename Work<T>::type F;
        inner = with_label_type(labels_dt, [&](auto label_tag) {
            typedef pointee<decltype(label_tag)> TL;
            decode_rows((const T*)rgb, rs, shape, (const F*)palette, table, args, (TL*)labels, ls,
                        distance, es);
        });
    });
    return outer != OK ? outer : inner;
}

// Nearest label of every uint8 colour, indexed by (r << 16) | (g << 8) | b; K <= 65536.
VBK_EXPORT int vbk_build_label_table(const float* palette, int K, u16* table) {
    for_rows(256, 256, 256, [&](i64 r, i64 g) {
        float pr[BLOCK], pg[BLOCK], pb[BLOCK], best_d2[BLOCK];
        int best[BLOCK];
        for (int b0 = 0; b0 < 256; b0 += BLOCK) {
            for (int i = 0; i < BLOCK; ++i) {
                pr[i] = (float)r;
                pg[i] = (float)g;
                pb[i] = (float)(b0 + i);
            }
            nearest_block_f32(pr, pg, pb, palette, K, best_d2, best);
            for (int i = 0; i < BLOCK; ++i) table[(r << 16) | (g << 8) | (b0 + i)] = (u16)best[i];
        }
    });
    return OK;
}

VBK_EXPORT int vbk_encode_segmentation(const void* labels, int labels_dt, const i64* ls,
                                       const i64* shape, const u8* palette, int K,
                                       const u8* ignore_color, u8* rgb, const i64* rs) {
    return with_integer_type(labels_dt, [&](auto tag) {
        typedef pointee<decltype(tag)> TL;
        for_rows(shape[0], shape[1], shape[2], [&](i64 n, i64 h) {
            const TL* row = row_start((const TL*)labels, ls, n, h);
            u8* orow = row_start(rgb, rs, n, h);
            for (i64 w = 0; w < shape[2]; ++w) {
                i64 label = (i64)row[w * ls[2]];
                const u8* colour = (label >= 0 && label < K) ? palette + 3 * label : ignore_color;
                for (int ch = 0; ch < 3; ++ch) orow[w * rs[2] + ch * rs[3]] = colour[ch];
            }
        });
    });
}
