// Per-pixel steps of decode_instances on the compiled CPU backend, over views of any strides:
// the colour histogram and the nearest-colour labelling of vbkernels/reference/instances.py,
// in the same integer fixed point (16 steps per 0..255 unit), so histograms, labels and
// counts are bit-identical to the torch reference.
#include <algorithm>
#include <memory>
#include <vector>

#include <math.h>
#include <omp.h>

#include "cpu_common.h"

using namespace vbk;
using namespace vbk::cpu;

namespace {

const int STEPS = 16;
const int BIN_SHIFT = 7;
const int SIDE = 32;
const int BINS = SIDE * SIDE * SIDE;
const int NO_CENTRE = -1;

// Fixed-point channel value, as reference.quantize: uint8 v -> 16 v; floats through float32
// as floor(clamp(x, 0, 1) * 255 * 16 + 0.5) in that order (-ffp-contract=off keeps the
// multiply and add separately rounded). NaN sets *nan and quantizes as 0.
VBK_INLINE int quantize(u8 v, bool*) { return (int)v * STEPS; }

template <class T> VBK_INLINE int quantize(T v, bool* nan) {
    float x = (float)widen(v);  // float64 rounds to float32 first, like rgb.to(float32)
    if (x != x) {
        *nan = true;
        return 0;
    }
    x = x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x);
    return (int)floorf(x * 255.0f * (float)STEPS + 0.5f);
}

// One image row as fixed-point planes and a validity mask.
struct Row {
    std::vector<i32> r, g, b;
    std::vector<u8> valid;
    explicit Row(i64 W) : r(W), g(W), b(W), valid(W) {}
};

VBK_MULTIVERSION void quantize_packed_u8(const u8* __restrict px, i64 W, i32* __restrict r,
                                         i32* __restrict g, i32* __restrict b) {
    for (i64 w = 0; w < W; ++w) {
        r[w] = px[3 * w] * STEPS;
        g[w] = px[3 * w + 1] * STEPS;
        b[w] = px[3 * w + 2] * STEPS;
    }
}

template <class T> void quantize_row(const T* row, const i64* rs, i64 W, Row& out) {
    const bool packed_u8 = std::is_same<T, u8>::value && rs[2] == 3 && rs[3] == 1;
    if (packed_u8) {
        quantize_packed_u8((const u8*)row, W, out.r.data(), out.g.data(), out.b.data());
        memset(out.valid.data(), 1, W);
        return;
    }
    for (i64 w = 0; w < W; ++w) {
        const T* px = row + w * rs[2];
        bool nan = false;
        out.r[w] = quantize(px[0], &nan);
        out.g[w] = quantize(px[rs[3]], &nan);
        out.b[w] = quantize(px[2 * rs[3]], &nan);
        out.valid[w] = !nan;
    }
}

VBK_INLINE int close_to(int ar, int ag, int ab, int br, int bg, int bb, int tol) {
    return abs(ar - br) <= tol && abs(ag - bg) <= tol && abs(ab - bb) <= tol;
}

// Histogram accumulators of one image (count_all, count_flat: BINS; sum_flat: BINS x 3).
struct Histogram {
    i64* all;
    i64* flat;
    i64* sum;
};

// A run of consecutive pixels in one bin, added to the histogram in one go: instance maps
// are painted in flat regions, so runs are long and the scattered adds few.
struct Run {
    int bin = -1;
    i64 all = 0, flat = 0, r = 0, g = 0, b = 0;

    VBK_INLINE void flush(Histogram acc) {
        if (bin < 0) return;
        acc.all[bin] += all;
        acc.flat[bin] += flat;
        acc.sum[3 * bin] += r;
        acc.sum[3 * bin + 1] += g;
        acc.sum[3 * bin + 2] += b;
        all = flat = r = g = b = 0;
    }
};

// Flat mask of one row: valid, and the right and lower neighbours (where they exist) valid
// and within `tol` steps in every channel. Plain arrays and no branches, so it vectorises.
VBK_MULTIVERSION void flat_row(const i32* __restrict r, const i32* __restrict g,
                               const i32* __restrict b, const u8* __restrict valid,
                               const i32* __restrict dr, const i32* __restrict dg,
                               const i32* __restrict db, const u8* __restrict dvalid, i64 W,
                               int tol, u8* __restrict flat) {
    for (i64 w = 0; w + 1 < W; ++w) {
        flat[w] = valid[w] & valid[w + 1] &
                  close_to(r[w], g[w], b[w], r[w + 1], g[w + 1], b[w + 1], tol);
    }
    flat[W - 1] = valid[W - 1];
    if (!dr) return;
    for (i64 w = 0; w < W; ++w) {
        flat[w] &= dvalid[w] & close_to(r[w], g[w], b[w], dr[w], dg[w], db[w], tol);
    }
}

void flat_row(const Row& cur, const Row* below, i64 W, int tol, std::vector<u8>& flat) {
    flat_row(cur.r.data(), cur.g.data(), cur.b.data(), cur.valid.data(),
             below ? below->r.data() : nullptr, below ? below->g.data() : nullptr,
             below ? below->b.data() : nullptr, below ? below->valid.data() : nullptr, W, tol,
             flat.data());
}

// Rows [h0, h1) of image n.
template <class T>
void histogram_rows(const T* rgb, const i64* rs, const i64* shape, i64 n, i64 h0, i64 h1,
                    int tol, Histogram acc) {
    const i64 H = shape[1], W = shape[2];
    Row cur(W), below(W);
    std::vector<u8> flat(W);
    Run run;
    quantize_row(row_start(rgb, rs, n, h0), rs, W, cur);
    for (i64 h = h0; h < h1; ++h) {
        const bool has_below = h + 1 < H;
        if (has_below) quantize_row(row_start(rgb, rs, n, h + 1), rs, W, below);
        flat_row(cur, has_below ? &below : nullptr, W, tol, flat);
        for (i64 w = 0; w < W; ++w) {
            if (!cur.valid[w]) continue;
            int bin = (((cur.r[w] >> BIN_SHIFT) * SIDE) + (cur.g[w] >> BIN_SHIFT)) * SIDE +
                      (cur.b[w] >> BIN_SHIFT);
            if (bin != run.bin) {
                run.flush(acc);
                run.bin = bin;
            }
            run.all += 1;
            if (!flat[w]) continue;
            run.flat += 1;
            run.r += cur.r[w];
            run.g += cur.g[w];
            run.b += cur.b[w];
        }
        std::swap(cur, below);
    }
    run.flush(acc);
}

// Images are shared out whole when there are enough of them for every thread (each thread
// adds straight into its images' rows of the output); otherwise each image's rows are
// split between the threads, which fill private histograms and add them up at the end.
template <class T>
void histogram(const T* rgb, const i64* rs, const i64* shape, int tol, i64* count_all,
               i64* count_flat, i64* sum_flat) {
    const i64 N = shape[0], H = shape[1], W = shape[2];
    const int threads = omp_get_max_threads();
    const bool small = H * W < 65536;
    if (N >= threads || small) {
#pragma omp parallel for schedule(dynamic, 1) if (N > 1 && N * H * W >= 65536)
        for (i64 n = 0; n < N; ++n) {
            Histogram acc = {count_all + n * BINS, count_flat + n * BINS, sum_flat + 3 * n * BINS};
            histogram_rows(rgb, rs, shape, n, 0, H, tol, acc);
        }
        return;
    }
    for (i64 n = 0; n < N; ++n) {
#pragma omp parallel
        {
            std::vector<i64> all(BINS, 0), flat(BINS, 0), sum(3 * BINS, 0);
            const i64 t = omp_get_thread_num(), T_ = omp_get_num_threads();
            const i64 h0 = H * t / T_, h1 = H * (t + 1) / T_;
            if (h0 < h1) {
                histogram_rows(rgb, rs, shape, n, h0, h1, tol,
                               Histogram{all.data(), flat.data(), sum.data()});
            }
#pragma omp critical(vbk_histogram)
            {
                i64* out_all = count_all + n * BINS;
                i64* out_flat = count_flat + n * BINS;
                i64* out_sum = sum_flat + 3 * n * BINS;
                for (int i = 0; i < BINS; ++i) {
                    out_all[i] += all[i];
                    out_flat[i] += flat[i];
                }
                for (int i = 0; i < 3 * BINS; ++i) out_sum[i] += sum[i];
            }
        }
    }
}

// Pixels searched together: their coordinates and running minima stay in vector registers
// for the whole loop over the centres.
const int LANES = 16;

// Nearest of K fixed-point centres for `count` <= LANES pixels, strict < so ties go to the
// lowest index. Squared distances are < 3 * 4080^2 < 2^31: exact int32.
VBK_MULTIVERSION void nearest_lanes(const i32* r, const i32* g, const i32* b,
                                    const i32* centres, int K, i32* best_d2_out,
                                    i32* best_out) {
    i32 best_d2[LANES], best[LANES];
    for (int i = 0; i < LANES; ++i) {
        best_d2[i] = 0x7fffffff;
        best[i] = 0;
    }
    for (int j = 0; j < K; ++j) {
        const i32 cr = centres[3 * j], cg = centres[3 * j + 1], cb = centres[3 * j + 2];
        for (int i = 0; i < LANES; ++i) {
            i32 dr = r[i] - cr, dg = g[i] - cg, db = b[i] - cb;
            i32 d2 = dr * dr + dg * dg + db * db;
            i32 closer = -(i32)(d2 < best_d2[i]);
            best[i] = (best[i] & ~closer) | (j & closer);
            best_d2[i] = d2 < best_d2[i] ? d2 : best_d2[i];
        }
    }
    for (int i = 0; i < LANES; ++i) {
        best_d2_out[i] = best_d2[i];
        best_out[i] = best[i];
    }
}

struct AssignArgs {
    const i32* centres;  // (N, K, 3)
    int K;
    const i64* num_centres;  // (N,)
    i64 max_d2;
    int first_label;
    i64* counts;  // (N, K + 1): slot 0 the -1 pixels, slot j + 1 centre j's
};

// Per-thread buffers of one row: its pixels, and one entry per run of equal pixels.
struct AssignRow {
    Row px;
    std::vector<u8> starts;                     // pixel w begins a run
    std::vector<i32> r, g, b, best_d2, best;  // per run, padded to whole LANES blocks
    explicit AssignRow(i64 W)
        : px(W), starts(W), r(W + LANES), g(W + LANES), b(W + LANES), best_d2(W + LANES),
          best(W + LANES) {}
};

// Nearest centre of every pixel of a row, searched once per run of equal pixels (instance
// maps are flat regions, so a row holds few runs; a noisy row costs one compare per pixel).
// Returns the number of runs.
i64 nearest_runs(AssignRow& a, i64 W, const i32* centres, int K) {
    const Row& px = a.px;
    i64 runs = 0;
    for (i64 w = 0; w < W; ++w) {
        bool start = w == 0 || px.r[w] != px.r[w - 1] || px.g[w] != px.g[w - 1] ||
                     px.b[w] != px.b[w - 1] || px.valid[w] != px.valid[w - 1];
        a.starts[w] = start;
        if (!start) continue;
        a.r[runs] = px.r[w];
        a.g[runs] = px.g[w];
        a.b[runs] = px.b[w];
        ++runs;
    }
    for (i64 i = runs; i % LANES; ++i) a.r[i] = a.g[i] = a.b[i] = 0;
    for (i64 i0 = 0; i0 < runs; i0 += LANES) {
        nearest_lanes(&a.r[i0], &a.g[i0], &a.b[i0], centres, K, &a.best_d2[i0], &a.best[i0]);
    }
    return runs;
}

template <class T>
void assign(const T* rgb, const i64* rs, const i64* shape, const AssignArgs& a, i32* labels,
            const i64* ls) {
    const i64 W = shape[2];
    for_rows(shape[0], shape[1], W, [&](i64 n, i64 h) {
        // One set of row buffers per thread, kept between calls of the same width.
        thread_local std::unique_ptr<AssignRow> buffers;
        if (!buffers || (i64)buffers->starts.size() != W) buffers.reset(new AssignRow(W));
        AssignRow& row = *buffers;
        quantize_row(row_start(rgb, rs, n, h), rs, W, row.px);
        const int K = (int)std::min<i64>(a.num_centres[n], a.K);
        nearest_runs(row, W, a.centres + (i64)3 * a.K * n, K);
        std::vector<i64> counts(a.K + 1, 0);
        i32* lrow = row_start(labels, ls, n, h);
        i64 run = -1;
        for (i64 w = 0; w < W; ++w) {
            run += row.starts[w];
            const bool keep = K > 0 && row.px.valid[w] && row.best_d2[run] <= a.max_d2;
            lrow[w * ls[2]] = keep ? a.first_label + row.best[run] : NO_CENTRE;
            counts[keep ? row.best[run] + 1 : 0] += 1;
        }
        i64* out = a.counts + (a.K + 1) * n;
        for (int j = 0; j <= a.K; ++j) {
            if (counts[j] == 0) continue;
#pragma omp atomic
            out[j] += counts[j];
        }
    });
}

// ---------------------------------------------------------------------------------------
// Colour search on one image's histogram: candidates (histogram peaks), greedy merge and
// refinement, step for step as vbkernels/instances.py (_candidates, _suppress, _refine,
// _order) in the same integer arithmetic, so the colours found are the same.
// ---------------------------------------------------------------------------------------

struct SearchArgs {
    bool has_background;
    i64 background[3];
    i64 max_d2, merge_d2;
    i64 min_pixels, min_flat;
    int max_candidates, rounds;
};

struct Colour {
    i64 c[3];
};

// Integer num / den rounded half up, for num >= 0 and den > 0 (instances._round_div).
inline i64 round_div(i64 num, i64 den) { return (2 * num + den) / (2 * den); }

inline i64 dist2(const Colour& a, const Colour& b) {
    i64 d0 = a.c[0] - b.c[0], d1 = a.c[1] - b.c[1], d2 = a.c[2] - b.c[2];
    return d0 * d0 + d1 * d1 + d2 * d2;
}

// A histogram bin that holds pixels: its colour (mean of its flat pixels, else its centre).
struct Bin {
    Colour colour;
    i64 all, flat, sum[3];
};

std::vector<Bin> occupied_bins(const i64* all, const i64* flat, const i64* sum) {
    std::vector<Bin> bins;
    for (int i = 0; i < BINS; ++i) {
        if (all[i] <= 0) continue;
        Bin b;
        const int index[3] = {i / (SIDE * SIDE), (i / SIDE) % SIDE, i % SIDE};
        for (int ch = 0; ch < 3; ++ch) {
            const i64 centre = std::min<i64>((index[ch] << BIN_SHIFT) + (1 << (BIN_SHIFT - 1)),
                                             255 * STEPS);
            b.sum[ch] = sum[3 * i + ch];
            b.colour.c[ch] = flat[i] > 0 ? round_div(b.sum[ch], flat[i]) : centre;
        }
        b.all = all[i];
        b.flat = flat[i];
        bins.push_back(b);
    }
    return bins;
}

// Bins whose flat count is the maximum of their 3x3x3 neighbourhood, with at least min_flat
// flat pixels in it; strongest first (ties in bin order), at most max_candidates; the colour
// is the mean of the neighbourhood's flat pixels.
std::vector<Colour> candidates(const i64* flat, const i64* sum, const SearchArgs& a) {
    struct Peak { i64 strength; int bin; Colour colour; };
    std::vector<Peak> peaks;
    for (int i = 0; i < BINS; ++i) {
        if (flat[i] <= 0) continue;
        const int x = i / (SIDE * SIDE), y = (i / SIDE) % SIDE, z = i % SIDE;
        bool peak = true;
        i64 near = 0, near_sum[3] = {0, 0, 0};
        for (int dx = -1; dx <= 1; ++dx) {
            for (int dy = -1; dy <= 1; ++dy) {
                for (int dz = -1; dz <= 1; ++dz) {
                    const int u = x + dx, v = y + dy, w = z + dz;
                    if (u < 0 || u >= SIDE || v < 0 || v >= SIDE || w < 0 || w >= SIDE) continue;
                    const int j = (u * SIDE + v) * SIDE + w;
                    peak = peak && flat[j] <= flat[i];
                    near += flat[j];
                    for (int ch = 0; ch < 3; ++ch) near_sum[ch] += sum[3 * j + ch];
                }
            }
        }
        if (!peak || near < a.min_flat) continue;
        Peak p = {near, i, {{0, 0, 0}}};
        for (int ch = 0; ch < 3; ++ch) p.colour.c[ch] = round_div(near_sum[ch], near);
        peaks.push_back(p);
    }
    std::stable_sort(peaks.begin(), peaks.end(),
                     [](const Peak& l, const Peak& r) { return l.strength > r.strength; });
    if ((i64)peaks.size() > a.max_candidates) peaks.resize(a.max_candidates);
    std::vector<Colour> out;
    for (const Peak& p : peaks) out.push_back(p.colour);
    return out;
}

// Greedy merge, strongest first: a live colour is kept unless it is within merge distance of
// the background or of a stronger kept colour.
void suppress(const std::vector<Colour>& colours, std::vector<u8>& live, const SearchArgs& a) {
    const Colour background = {{a.background[0], a.background[1], a.background[2]}};
    std::vector<int> kept;
    for (size_t i = 0; i < colours.size(); ++i) {
        bool keep = live[i] && !(a.has_background && dist2(colours[i], background) <= a.merge_d2);
        for (size_t k = 0; keep && k < kept.size(); ++k) {
            keep = dist2(colours[i], colours[kept[k]]) > a.merge_d2;
        }
        live[i] = keep;
        if (keep) kept.push_back((int)i);
    }
}

// Per colour: pixels, flat pixels and flat sums of the bins nearest it (within max_d2; the
// background, when there is one, competes as colour -1 and keeps its bins).
struct Stats {
    std::vector<i64> pixels, flat, sum;
};

Stats bin_stats(const std::vector<Bin>& bins, const std::vector<Colour>& colours,
                const std::vector<u8>& live, const SearchArgs& a) {
    const size_t k = colours.size();
    Stats s = {std::vector<i64>(k, 0), std::vector<i64>(k, 0), std::vector<i64>(3 * k, 0)};
    const Colour background = {{a.background[0], a.background[1], a.background[2]}};
    for (const Bin& b : bins) {
        i64 best_d2 = a.has_background ? dist2(b.colour, background) : INT64_MAX;
        long best = -1;  // -1: the background, or nothing yet
        for (size_t j = 0; j < k; ++j) {
            if (!live[j]) continue;
            const i64 d2 = dist2(b.colour, colours[j]);
            if (d2 < best_d2) {
                best_d2 = d2;
                best = (long)j;
            }
        }
        if (best < 0 || best_d2 > a.max_d2) continue;
        s.pixels[best] += b.all;
        s.flat[best] += b.flat;
        for (int ch = 0; ch < 3; ++ch) s.sum[3 * best + ch] += b.sum[ch];
    }
    return s;
}

// One image: writes its live colours, ordered by pixel count (descending) then colour
// (R, G, B ascending), into out (max_candidates x 3); returns how many.
int search_image(const i64* all, const i64* flat, const i64* sum, const SearchArgs& a,
                 i64* out) {
    const std::vector<Bin> bins = occupied_bins(all, flat, sum);
    std::vector<Colour> colours = candidates(flat, sum, a);
    std::vector<u8> live(colours.size(), 1);
    suppress(colours, live, a);
    Stats s;
    for (int round = 0;; ++round) {
        s = bin_stats(bins, colours, live, a);
        for (size_t j = 0; j < colours.size(); ++j) {
            live[j] = live[j] && s.flat[j] > 0;
            if (!live[j]) continue;
            for (int ch = 0; ch < 3; ++ch) colours[j].c[ch] = round_div(s.sum[3 * j + ch], s.flat[j]);
        }
        if (round == a.rounds) break;
        for (size_t j = 0; j < colours.size(); ++j) {
            live[j] = live[j] && s.pixels[j] >= a.min_pixels && s.flat[j] >= a.min_flat;
        }
        suppress(colours, live, a);
    }
    std::vector<int> order;
    for (size_t j = 0; j < colours.size(); ++j) {
        if (live[j]) order.push_back((int)j);
    }
    std::stable_sort(order.begin(), order.end(), [&](int l, int r) {
        if (s.pixels[l] != s.pixels[r]) return s.pixels[l] > s.pixels[r];
        const i64* cl = colours[l].c;
        const i64* cr = colours[r].c;
        return std::lexicographical_compare(cl, cl + 3, cr, cr + 3);
    });
    for (size_t i = 0; i < order.size(); ++i) {
        for (int ch = 0; ch < 3; ++ch) out[3 * i + ch] = colours[order[i]].c[ch];
    }
    return (int)order.size();
}

}  // namespace

// Histograms as vbk_colour_histogram fills them (contiguous, N images); background: 3
// fixed-point values or null. Writes each image's colours into centres (N, max_candidates, 3)
// int64 and their number into found (N,).
VBK_EXPORT int vbk_search_colours(const i64* count_all, const i64* count_flat,
                                  const i64* sum_flat, i64 N, const i64* background,
                                  i64 max_d2, i64 merge_d2, i64 min_pixels, i64 min_flat,
                                  int max_candidates, int rounds, i64* centres, i64* found) {
    SearchArgs a = {background != nullptr, {0, 0, 0}, max_d2, merge_d2, min_pixels, min_flat,
                    max_candidates, rounds};
    for (int ch = 0; ch < 3 && background; ++ch) a.background[ch] = background[ch];
#pragma omp parallel for schedule(dynamic, 1) if (N > 1)
    for (i64 n = 0; n < N; ++n) {
        found[n] = search_image(count_all + n * BINS, count_flat + n * BINS,
                                sum_flat + 3 * n * BINS, a, centres + 3 * max_candidates * n);
    }
    return OK;
}

// count_all, count_flat: contiguous (N, 32^3) int64; sum_flat: contiguous (N, 32^3, 3)
// int64. All three are added into.
VBK_EXPORT int vbk_colour_histogram(const void* rgb, int rgb_dt, const i64* rs,
                                    const i64* shape, int flat_tolerance_q, i64* count_all,
                                    i64* count_flat, i64* sum_flat) {
    return with_image_type(rgb_dt, [&](auto tag) {
        typedef pointee<decltype(tag)> T;
        histogram((const T*)rgb, rs, shape, flat_tolerance_q, count_all, count_flat, sum_flat);
    });
}

// centres: contiguous (N, K, 3) int32; num_centres: (N,) int64, image n uses its first
// num_centres[n] rows; labels: (N, H, W) int32 view; counts: contiguous (N, K + 1) int64,
// added into.
VBK_EXPORT int vbk_assign_pixels(const void* rgb, int rgb_dt, const i64* rs, const i64* shape,
                                 const i32* centres, int K, const i64* num_centres,
                                 i64 max_dist2_q, int first_label, i32* labels, const i64* ls,
                                 i64* counts) {
    AssignArgs args = {centres, K, num_centres, max_dist2_q, first_label, counts};
    return with_image_type(rgb_dt, [&](auto tag) {
        typedef pointee<decltype(tag)> T;
        assign((const T*)rgb, rs, shape, args, labels, ls);
    });
}
