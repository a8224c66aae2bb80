// maxPool2d CPU kernels (NCHW, floor mode); see pool.h for the contract.
//
// Forward: every (n,c) plane is independent. For each output cell the window
// [oh*sh - ph, oh*sh - ph + KH) x [ow*sw - pw, ow*sw - pw + KW) is clipped to the input, so
// padded cells are never visited and can never win. The window is scanned in row-major order
// with a strict '>', so the first maximum wins ties. idx stores ih*W + iw within the plane.
// Per output row, the columns whose windows lie fully inside the input are processed together
// (ih, kw outer; ow inner, branch-free selects, vectorised); border columns go through the
// scalar per-cell path. NaN: the first NaN in a window wins (propagates as in PyTorch); an output
// row that saw a NaN is redone with the scalar path, which handles it. An empty clipped window
// (excluded by the caller's padding <= kernel/2 rule) yields -inf and idx -1, skipped by backward.
//
// Backward: per plane, dx is zeroed and dy[o] is added at dx[idx[o]]; overlapping windows add up.
//
// Threads: parallel_for over the N*C planes. A plane is owned by exactly one worker in both
// passes, so the scatter-add in backward needs no atomics.
#include <algorithm>
#include <cstdint>
#include <limits>

#include "ops/pool.h"

namespace cn {

namespace {

// One output cell with its window clipped to the input (used at the borders).
inline void pool_cell(const Pool2dShape& s, const float* xp, int hb, int he, int ow, float* yo,
                      int32_t* io) {
  const int w0 = ow * s.sw - s.pw;
  const int wb = std::max(w0, 0);
  const int we = std::min(w0 + s.KW, s.W);
  if (hb >= he || wb >= we) {
    *yo = -std::numeric_limits<float>::infinity();
    *io = -1;
    return;
  }
  int32_t arg = hb * s.W + wb;
  float best = xp[arg];
  for (int ih = hb; ih < he; ++ih) {
    const float* row = xp + static_cast<int64_t>(ih) * s.W;
    for (int iw = wb; iw < we; ++iw) {
      const float v = row[iw];
      const bool take = (v > best) | ((v != v) & (best == best));
      best = take ? v : best;
      arg = take ? ih * s.W + iw : arg;
    }
  }
  *yo = best;
  *io = arg;
}

}  // namespace

void maxpool2d_forward_cpu(ThreadPool* pool, const Pool2dShape& s, const float* x, float* y,
                           int32_t* idx) {
  const int64_t in_plane = static_cast<int64_t>(s.H) * s.W;
  const int64_t out_plane = static_cast<int64_t>(s.OH) * s.OW;
  const int64_t planes = static_cast<int64_t>(s.N) * s.C;
  parallel_for(pool, planes, [&s, x, y, idx, in_plane, out_plane](int64_t begin, int64_t end,
                                                                  int) {
    // Locals (not captures) so the compiler knows the stores below cannot change them.
    const int H = s.H, W = s.W, KH = s.KH, KW = s.KW, sh = s.sh, sw = s.sw, ph = s.ph, pw = s.pw;
    const int OH = s.OH, OW = s.OW;
    // Columns [lo, hi) have windows that lie fully inside the input horizontally.
    const int lo = static_cast<int>(std::min<int64_t>(OW, (int64_t(pw) + sw - 1) / sw));
    const int hi = std::max(lo, W + pw - KW >= 0 ? std::min(OW, (W + pw - KW) / sw + 1) : 0);
    for (int64_t p = begin; p < end; ++p) {
      const float* __restrict xp = x + p * in_plane;
      for (int oh = 0; oh < OH; ++oh) {
        const int h0 = oh * sh - ph;
        const int hb = std::max(h0, 0);
        const int he = std::min(h0 + KH, H);
        float* __restrict yo = y + p * out_plane + static_cast<int64_t>(oh) * OW;
        int32_t* __restrict io = idx + p * out_plane + static_cast<int64_t>(oh) * OW;
        for (int ow = 0; ow < lo; ++ow) pool_cell(s, xp, hb, he, ow, yo + ow, io + ow);
        for (int ow = hi; ow < OW; ++ow) pool_cell(s, xp, hb, he, ow, yo + ow, io + ow);
        if (lo == hi) continue;
        if (hb >= he) {
          for (int ow = lo; ow < hi; ++ow) pool_cell(s, xp, hb, he, ow, yo + ow, io + ow);
          continue;
        }
        // Interior columns together: ih and kw outer, ow inner (vectorised), so every column
        // still visits its window in row-major order. The selects are branch-free; maxps-style
        // compares ignore NaN, so a row that saw one is redone by pool_cell.
        for (int ow = lo; ow < hi; ++ow) {
          const int i = hb * W + ow * sw - pw;
          yo[ow] = xp[i];
          io[ow] = i;
        }
        int nan = 0;
        for (int ih = hb; ih < he; ++ih) {
          for (int kw = 0; kw < KW; ++kw) {
            const int off = ih * W + kw - pw;
            const float* __restrict row = xp + off;
            for (int ow = lo; ow < hi; ++ow) {
              const float v = row[ow * sw];
              const float best = yo[ow];
              const int32_t take = -static_cast<int32_t>(v > best);
              yo[ow] = v > best ? v : best;
              io[ow] ^= (io[ow] ^ (off + ow * sw)) & take;
              nan |= static_cast<int>(v != v);
            }
          }
        }
        if (nan) {
          for (int ow = lo; ow < hi; ++ow) pool_cell(s, xp, hb, he, ow, yo + ow, io + ow);
        }
      }
    }
  });
}

void maxpool2d_backward_cpu(ThreadPool* pool, const Pool2dShape& s, const float* dy,
                            const int32_t* idx, float* dx) {
  const int64_t in_plane = static_cast<int64_t>(s.H) * s.W;
  const int64_t out_plane = static_cast<int64_t>(s.OH) * s.OW;
  const int64_t planes = static_cast<int64_t>(s.N) * s.C;
  parallel_for(pool, planes, [&](int64_t begin, int64_t end, int) {
    for (int64_t p = begin; p < end; ++p) {
      float* dxp = dx + p * in_plane;
      const float* dyp = dy + p * out_plane;
      const int32_t* ip = idx + p * out_plane;
      std::fill(dxp, dxp + in_plane, 0.0f);
      for (int64_t o = 0; o < out_plane; ++o) {
        const int32_t i = ip[o];
        if (i >= 0) dxp[i] += dyp[o];
      }
    }
  });
}

}  // namespace cn
