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

VBK_INLINE int paeth(int a, int b, int c) {
    int pa = std::abs(b - c), pb = std::abs(a - c), pc = std::abs(a + b - 2 * c);
    return (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
}

// One row: filtered bytes f (without the filter byte), the reconstructed row above (zeros
// for the first row), bpp bytes per pixel. Returns false for an unknown filter type.
VBK_INLINE bool unfilter_row(int kind, const u8* f, const u8* above, u8* out, i64 n, int bpp) {
    switch (kind) {
    case 0:
        for (i64 i = 0; i < n; ++i) out[i] = f[i];
        return true;
    case 1:
        for (i64 i = 0; i < n; ++i) out[i] = u8(f[i] + (i >= bpp ? out[i - bpp] : 0));
        return true;
    case 2:
        for (i64 i = 0; i < n; ++i) out[i] = u8(f[i] + above[i]);
        return true;
    case 3:
        for (i64 i = 0; i < n; ++i)
            out[i] = u8(f[i] + ((int(i >= bpp ? out[i - bpp] : 0) + int(above[i])) >> 1));
        return true;
    case 4:
        for (i64 i = 0; i < n; ++i) {
            int a = i >= bpp ? out[i - bpp] : 0, c = i >= bpp ? above[i - bpp] : 0;
            out[i] = u8(f[i] + paeth(a, above[i], c));
        }
        return true;
    default:
        return false;
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
