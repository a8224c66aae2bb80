// linear and softmax cross-entropy.
//
// linear:  x [N, K], w [M, K], b [M] (optional)  ->  y [N, M] = x w^T + b
//   backward (all overwritten): dx [N,K] = dy w;  dw [M,K] = dy^T x;  db [M] = sum_n dy
//
// softmax cross-entropy: logits [N, M], labels int32 [N] (checked in range by the caller)
//   p = softmax(logits) row-wise, computed as exp(z - max) / sum exp(z - max) (finite for |z| ~ 1e3)
//   loss = -(1/N) sum_n log p[n, label_n] = (1/N) sum_n (logsumexp(z_n) - z_n[label_n])
//   forward saves p; backward: dlogits = gout * (p - onehot(label)) / N (overwritten)
#pragma once
#include <cstdint>

#include "core/parallel.h"

namespace cn {

void linear_forward_cpu(ThreadPool* pool, int N, int K, int M, const float* x, const float* w,
                        const float* b, float* y);
void linear_backward_data_cpu(ThreadPool* pool, int N, int K, int M, const float* dy,
                              const float* w, float* dx);
void linear_backward_weight_cpu(ThreadPool* pool, int N, int K, int M, const float* x,
                                const float* dy, float* dw, float* db);

void softmax_xent_forward_cpu(ThreadPool* pool, int N, int M, const float* logits,
                              const int32_t* labels, float* probs, float* loss);
void softmax_xent_backward_cpu(ThreadPool* pool, int N, int M, const float* probs,
                               const int32_t* labels, const float* gout, float* dlogits);

}  // namespace cn
