// CPU linear (three GEMMs) and softmax cross-entropy.
// Thread mapping: the GEMMs split over the pool; softmax rows are split over the pool and the
// loss is summed afterwards in row order, so the result does not depend on the thread count.
#include <cmath>
#include <vector>

#include "ops/gemm.h"
#include "ops/loss.h"

namespace cn {

void linear_forward_cpu(ThreadPool* pool, int N, int K, int M, const float* x, const float* w,
                        const float* b, float* y) {
  if (b) {
    for (int n = 0; n < N; ++n)
      for (int m = 0; m < M; ++m) y[static_cast<int64_t>(n) * M + m] = b[m];
  }
  sgemm(pool, false, true, N, M, K, 1.0f, x, K, w, K, b ? 1.0f : 0.0f, y, M);
}

void linear_backward_data_cpu(ThreadPool* pool, int N, int K, int M, const float* dy,
                              const float* w, float* dx) {
  sgemm(pool, false, false, N, K, M, 1.0f, dy, M, w, K, 0.0f, dx, K);
}

void linear_backward_weight_cpu(ThreadPool* pool, int N, int K, int M, const float* x,
                                const float* dy, float* dw, float* db) {
  sgemm(pool, true, false, M, K, N, 1.0f, dy, M, x, K, 0.0f, dw, K);
  if (db) {
    for (int m = 0; m < M; ++m) db[m] = 0.f;
    for (int n = 0; n < N; ++n) {
      const float* row = dy + static_cast<int64_t>(n) * M;
      for (int m = 0; m < M; ++m) db[m] += row[m];
    }
  }
}

void softmax_xent_forward_cpu(ThreadPool* pool, int N, int M, const float* logits,
                              const int32_t* labels, float* probs, float* loss) {
  std::vector<double> row_loss(N);
  parallel_for(pool, N, [&](int64_t b, int64_t e, int) {
    for (int64_t n = b; n < e; ++n) {
      const float* z = logits + n * M;
      float* p = probs + n * M;
      float mx = z[0];
      for (int m = 1; m < M; ++m) mx = z[m] > mx ? z[m] : mx;
      double sum = 0;
      for (int m = 0; m < M; ++m) {
        float e_m = std::exp(z[m] - mx);
        p[m] = e_m;
        sum += e_m;
      }
      float inv = static_cast<float>(1.0 / sum);
      for (int m = 0; m < M; ++m) p[m] *= inv;
      row_loss[n] = std::log(sum) + mx - z[labels[n]];
    }
  });
  double total = 0;
  for (int n = 0; n < N; ++n) total += row_loss[n];
  *loss = static_cast<float>(total / N);
}

void softmax_xent_backward_cpu(ThreadPool* pool, int N, int M, const float* probs,
                               const int32_t* labels, const float* gout, float* dlogits) {
  const float g = *gout / static_cast<float>(N);
  parallel_for(pool, N, [&](int64_t b, int64_t e, int) {
    for (int64_t n = b; n < e; ++n) {
      for (int m = 0; m < M; ++m) {
        float t = m == labels[n] ? 1.0f : 0.0f;
        dlogits[n * M + m] = g * (probs[n * M + m] - t);
      }
    }
  });
}

}  // namespace cn
