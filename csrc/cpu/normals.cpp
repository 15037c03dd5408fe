// Normal ops of the compiled CPU backend (docs/format.md, Normals), over views of any strides.
#include "cpu_common.h"

using namespace vbk;
using namespace vbk::cpu;

namespace {

// Contiguous HWC uint8 into contiguous float32 normals: a plain function so it can be
// compiled per instruction set (the division and sqrt vectorise).
VBK_MULTIVERSION void normals_row_u8(const u8* px, i64 W, float* out, float* norm, bool flip_yz,
                                     float eps) {
    for (i64 w = 0; w < W; ++w) {
        Normal<float> n = normal_at(px + 3 * w, 1, eps, flip_yz);
        out[3 * w] = n.n[0];
        out[3 * w + 1] = n.n[1];
        out[3 * w + 2] = n.n[2];
        if (norm) norm[w] = n.norm;
    }
}

template <class T, class TO>
void decode_rows(const T* rgb, const i64* rs, const i64* shape, TO* out, const i64* os,
                 float* norm, const i64* ms, bool flip_yz, double eps) {
    typedef typename Work<T>::type F;
    bool contiguous = std::is_same<T, u8>::value && std::is_same<TO, float>::value &&
                      rs[2] == 3 && rs[3] == 1 && os[2] == 3 && os[3] == 1 && (!norm || ms[2] == 1);
    for_rows(shape[0], shape[1], shape[2], [&](i64 n, i64 h) {
        const T* row = row_start(rgb, rs, n, h);
        TO* orow = row_start(out, os, n, h);
        float* mrow = norm ? row_start(norm, ms, n, h) : nullptr;
        if constexpr (std::is_same<T, u8>::value && std::is_same<TO, float>::value) {
            if (contiguous) {
                normals_row_u8(row, shape[2], orow, mrow, flip_yz, (float)eps);
                return;
            }
        }
        for (i64 w = 0; w < shape[2]; ++w) {
            const T* px = row + w * rs[2];
            Normal<F> v = normal_at(px, rs[3], (F)eps, flip_yz);
            TO* o = orow + w * os[2];
            for (int ch = 0; ch < 3; ++ch) put(o + ch * os[3], v.n[ch]);
            if (mrow) put(mrow + w * ms[2], v.norm);
        }
    });
}

template <class TO> void store_units(TO* px, i64 c, const double* v) {
    for (int ch = 0; ch < 3; ++ch) put(px + ch * c, v[ch] / 255.0);
}

void store_units(u8* px, i64 c, const double* v) {
    for (int ch = 0; ch < 3; ++ch) {
        double x = rint(v[ch]);
        px[ch * c] = x > 0.0 ? (u8)x : (u8)0;  // already clamped to [0, 255]; NaN gives 0
    }
}

}  // namespace

VBK_EXPORT int vbk_decode_normals(const void* rgb, int rgb_dt, const i64* rs, const i64* shape,
                                  void* normals, int out_dt, const i64* os, float* norm,
                                  const i64* ms, int flip_yz, double eps) {
    int inner = OK;
    int outer = with_image_type(rgb_dt, [&](auto in_tag) {
        typedef pointee<decltype(in_tag)> T;
        inner = with_float_type(out_dt, [&](auto out_tag) {
            typedef pointee<decltype(out_tag)> TO;
            decode_rows((const T*)rgb, rs, shape, (TO*)normals, os, norm, ms, flip_yz != 0, eps);
        });
    });
    return outer != OK ? outer : inner;
}

VBK_EXPORT int vbk_encode_normals(const void* normals, int in_dt, const i64* ns, const i64* shape,
                                  void* rgb, int rgb_dt, const i64* rs, int flip_yz) {
    int inner = OK;
    int outer = with_float_type(in_dt, [&](auto in_tag) {
        typedef pointee<decltype(in_tag)> T;
        inner = with_image_type(rgb_dt, [&](auto out_tag) {
            typedef pointee<decltype(out_tag)> TO;
            for_rows(shape[0], shape[1], shape[2], [&](i64 n, i64 h) {
                const T* row = row_start((const T*)normals, ns, n, h);
                TO* orow = row_start((TO*)rgb, rs, n, h);
                for (i64 w = 0; w < shape[2]; ++w) {
                    double v[3];
                    for (int ch = 0; ch < 3; ++ch) {
                        double x = (double)widen(row[w * ns[2] + ch * ns[3]]);
                        v[ch] = normal_units(flip_yz && ch > 0 ? x * -1.0 : x);
                    }
                    store_units(orow + w * rs[2], rs[3], v);
                }
            });
        });
    });
    return outer != OK ? outer : inner;
}
