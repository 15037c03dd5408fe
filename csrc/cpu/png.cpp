// PNG row unfiltering (the five filter types of the PNG specification, 8-bit samples) and
// conversion to RGB, for vbkernels.pipeline.png: after ISA-L inflates a PNG's image data,
// this undoes the per-row filters in one pass, where NumPy needs a Python loop for the
// Average and Paeth filters (sequential along x).
#include <cstdint>
#include <cstdlib>

#include "cpu_common.h"

namespace {

using u8 = std::uint8_t;
using vbk::i64;

// The Paeth predictor, branch-free (the compiler turns the selects into cmovs).
VBK_INLINE int paeth(int a, int b, int c) {
    int pa = std::abs(b - c), pb = std::abs(a - c), pc = std::abs(a + b - 2 * c);
    int bc = pb <= pc ? b : c;
    return (pa <= pb && pa <= pc) ? a : bc;
}

// The filters that read the pixel to the left (Sub, Average, Paeth) for BPP bytes per
// pixel: the left pixel and the one above it stay in registers, so each byte's dependency
// chain runs through arithmetic, not through a store and a reload. n is width * BPP.
template <int KIND, int BPP> VBK_INLINE void left_filter_row(const u8* f, const u8* above,
                                                             u8* out, i64 n) {
    int a[BPP] = {}, c[BPP] = {};  // left and upper-left: 0 for the first pixel
    for (i64 i = 0; i < n; i += BPP) {
        for (int k = 0; k < BPP; ++k) {
            const int b = above[i + k];
            const int pred = KIND == 1 ? a[k] : KIND == 3 ? (a[k] + b) >> 1 : paeth(a[k], b, c[k]);
            const int v = u8(f[i + k] + pred);
            out[i + k] = u8(v);
            a[k] = v;
            c[k] = b;
        }
    }
}

template <int KIND> VBK_INLINE bool left_filter(const u8* f, const u8* above, u8* out, i64 n,
                                                int bpp) {
    switch (bpp) {
    case 1: left_filter_row<KIND, 1>(f, above, out, n); return true;
    case 2: left_filter_row<KIND, 2>(f, above, out, n); return true;
    case 3: left_filter_row<KIND, 3>(f, above, out, n); return true;
    case 4: left_filter_row<KIND, 4>(f, above, out, n); return true;
    default: return false;
    }
}

// One row: filtered bytes f (without the filter byte), the reconstructed row above (zeros
// for the first row), bpp bytes per pixel (1..4). False for an unknown filter type.
VBK_INLINE bool unfilter_row(int kind, const u8* f, const u8* above, u8* out, i64 n, int bpp) {
    switch (kind) {
    case 0:
        for (i64 i = 0; i < n; ++i) out[i] = f[i];
        return true;
    case 2:
        for (i64 i = 0; i < n; ++i) out[i] = u8(f[i] + above[i]);
        return true;
    case 1: return left_filter<1>(f, above, out, n, bpp);
    case 3: return left_filter<3>(f, above, out, n, bpp);
    case 4: return left_filter<4>(f, above, out, n, bpp);
    default: return false;
    }
}

}  // namespace

// filtered: height rows of (1 + width * channels) bytes (a filter byte, then the row);
// pixels: height * width * channels bytes, written in place row by row (each row reads the
// one above it, already reconstructed). Returns 0, the first row with an unknown filter
// type as its index + 1 (PNG heights are below 2^31), or -1 when memory runs out.
VBK_EXPORT int vbk_png_unfilter(const u8* filtered, i64 height, i64 width, int channels,
                                u8* pixels) {
    const i64 n = width * channels;
    static const u8 zeros[4096] = {};
    u8* zero_row = n <= 4096 ? const_cast<u8*>(zeros) : static_cast<u8*>(std::calloc(n, 1));
    if (zero_row == nullptr) return -1;
    int status = 0;
    for (i64 y = 0; y < height && status == 0; ++y) {
        const u8* row = filtered + y * (n + 1);
        const u8* above = y ? pixels + (y - 1) * n : zero_row;
        if (!unfilter_row(row[0], row + 1, above, pixels + y * n, n, channels))
            status = int(y + 1);
    }
    if (n > 4096) std::free(zero_row);
    return status;
}
