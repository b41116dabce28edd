// Train-mode batch norm kernels of the GPU engine (feature `cuda`, opt-in `UNISAL_BN_KERNELS=1`), compiled to PTX by
// build.rs and launched by src/nn/cuda_bn.rs: NCHW or channels-last activations in f32 or bf16, per-channel
// parameters and statistics in f32. Why our own: PyTorch does not use cuDNN for bf16 batch norm (its own
// kernels), and cuDNN's took 41.6 ms of a 92.8 ms bf16 dual ResNet-50 step on an H200 (session 18), about eight
// times what the bytes take to move.
//
// No thread waits on another (no shared memory, no barrier, no shuffle), so that tests/cuda_on_cpu can run every
// kernel on the CPU: a channel's sums are made in pieces, one a thread, then merged by one thread a channel.
//
// Forward: `partials` (each thread: the sum and the sum of squares of its share of a channel, both about the
// channel's first value, so that a large mean does not cancel the variance away), `finalize` (a channel's mean and
// 1/sqrt(var + eps), the running statistics with torch's momentum and the unbiased variance), `normalize`.
// Backward: `bwd_partials` (sums of dy and dy * xhat), `bwd_finalize` (dbeta, dgamma), `dx`.
//
// Layout: x[(n * C + c) * S + s] (channels last: x[(n * S + s) * C + c]), S = H * W, M = N * S values a channel,
// N * C * S < 2^31. A channel's share j of
// P: the values m = j, j + P, j + 2P, ... (m = n * S + s), so that neighbouring threads read neighbouring values.
// No kernel divides in its loop (the walks below).

#include <cuda_bf16.h>

__device__ __forceinline__ float unisal_bn_load(const float* p, unsigned int i) { return p[i]; }
__device__ __forceinline__ float unisal_bn_load(const __nv_bfloat16* p, unsigned int i) {
  return __bfloat162float(p[i]);
}
__device__ __forceinline__ void unisal_bn_store(float* p, unsigned int i, float v) { p[i] = v; }
__device__ __forceinline__ void unisal_bn_store(__nv_bfloat16* p, unsigned int i, float v) {
  p[i] = __float2bfloat16(v);
}

// A walk over a channel's values m = j, j + P, j + 2P, ... (m = n * S + s) without a division a step: (n, s) advance
// by (P / S, P % S) with a carry. Counts are 32-bit (cuda_bn.rs checks that N * C * S fits).
struct UnisalBnChannelWalk {
  unsigned int n, s, dn, ds, S;
  __device__ __forceinline__ UnisalBnChannelWalk(unsigned int j, unsigned int P, unsigned int S_)
      : n(j / S_), s(j % S_), dn(P / S_), ds(P % S_), S(S_) {}
  __device__ __forceinline__ unsigned int at(unsigned int c, unsigned int C) const { return (n * C + c) * S + s; }
  __device__ __forceinline__ void next() {
    n += dn;
    s += ds;
    if (s >= S) {
      s -= S;
      n += 1;
    }
  }
};

// The channels-last walk over a channel's values: value m (m = n * S + s) of channel c is at m * C + c.
struct UnisalBnChannelWalkNhwc {
  unsigned int m, P;
  __device__ __forceinline__ UnisalBnChannelWalkNhwc(unsigned int j, unsigned int P_, unsigned int) : m(j), P(P_) {}
  __device__ __forceinline__ unsigned int at(unsigned int c, unsigned int C) const { return m * C + c; }
  __device__ __forceinline__ void next() { m += P; }
};

// A grid-stride walk over all values i of channels-last data (i = (n * S + s) * C + c): c = i % C advances by
// T % C with a wrap.
struct UnisalBnFlatWalkNhwc {
  unsigned int i, c, step, dc, C;
  __device__ __forceinline__ UnisalBnFlatWalkNhwc(unsigned int i0, unsigned int T, unsigned int, unsigned int C_)
      : i(i0), c(i0 % C_), step(T), dc(T % C_), C(C_) {}
  __device__ __forceinline__ void next() {
    i += step;
    c += dc;
    if (c >= C) c -= C;
  }
};

// A grid-stride walk over all values i (i = (n * C + c) * S + s) that keeps i's channel c without a division a step:
// the plane q = i / S advances by (T / S, T % S) with a carry, and c = q % C with it.
struct UnisalBnFlatWalk {
  unsigned int i, s, c, step, dq, ds, S, C;
  __device__ __forceinline__ UnisalBnFlatWalk(unsigned int i0, unsigned int T, unsigned int S_, unsigned int C_)
      : i(i0), s(i0 % S_), c((i0 / S_) % C_), step(T), dq((T / S_) % C_), ds(T % S_), S(S_), C(C_) {}
  __device__ __forceinline__ void next() {
    i += step;
    s += ds;
    c += dq;
    if (s >= S) {
      s -= S;
      c += 1;
    }
    if (c >= C) c -= C;  // c + dq + 1 <= 2C - 1: one subtraction is enough
  }
};

// The walks of a layout: NCHW (`NHWC` false) or channels last.
template <bool NHWC> struct UnisalBnWalks {
  typedef UnisalBnChannelWalk Channel;
  typedef UnisalBnFlatWalk Flat;
};
template <> struct UnisalBnWalks<true> {
  typedef UnisalBnChannelWalkNhwc Channel;
  typedef UnisalBnFlatWalkNhwc Flat;
};

// Thread t's channel and share: NCHW, t = c * P + j (a channel's shares side by side, reading neighbouring values);
// channels last, t = j * C + c (the channels side by side, reading neighbouring values).
template <bool NHWC>
__device__ __forceinline__ void unisal_bn_share(unsigned long long t, unsigned int C, unsigned int P, unsigned int& c,
                                                unsigned int& j) {
  c = NHWC ? (unsigned int)(t % C) : (unsigned int)(t / P);
  j = NHWC ? (unsigned int)(t / C) : (unsigned int)(t % P);
}

// partials[(c * P + j) * 2 + {0, 1}] = sum of (x - K_c), sum of (x - K_c)^2 over share j of channel c, K_c the
// channel's first value. C * P threads.
template <typename T, bool NHWC>
__device__ void unisal_bn_partials(const T* __restrict__ x, float* __restrict__ partials, unsigned int C,
                                   unsigned int S, unsigned int M, unsigned int P) {
  const unsigned long long t = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
  if (t >= (unsigned long long)C * P) return;
  unsigned int c, j;
  unisal_bn_share<NHWC>(t, C, P, c, j);
  const float k = unisal_bn_load(x, NHWC ? c : c * S);
  float s1 = 0.f, s2 = 0.f;
  typename UnisalBnWalks<NHWC>::Channel w(j, P, S);
  for (unsigned int m = j; m < M; m += P, w.next()) {
    const float v = unisal_bn_load(x, w.at(c, C)) - k;
    s1 += v;
    s2 += v * v;
  }
  partials[((unsigned long long)c * P + j) * 2] = s1;
  partials[((unsigned long long)c * P + j) * 2 + 1] = s2;
}

// The sums of channel c's P shares (each a pair), in f64.
__device__ __forceinline__ void unisal_bn_merge(const float* __restrict__ partials, unsigned long long c,
                                                unsigned int P, double& s1, double& s2) {
  s1 = 0.0, s2 = 0.0;
  for (unsigned int j = 0; j < P; ++j) {
    s1 += partials[(c * P + j) * 2];
    s2 += partials[(c * P + j) * 2 + 1];
  }
}

// One thread a channel: merges its P partials (in f64), writes the saved mean and 1/sqrt(var + eps), and moves the
// running statistics toward the batch's by `momentum` (the variance unbiased, M / (M - 1)).
template <typename T, bool NHWC>
__device__ void unisal_bn_finalize(const T* __restrict__ x, const float* __restrict__ partials,
                                   float* __restrict__ save_mean, float* __restrict__ save_invstd,
                                   float* __restrict__ running_mean, float* __restrict__ running_var,
                                   unsigned int C, unsigned int S, unsigned int M, unsigned int P, float eps,
                                   float momentum) {
  const unsigned long long c = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
  if (c >= C) return;
  double s1, s2;
  unisal_bn_merge(partials, c, P, s1, s2);
  const double shift_mean = s1 / M;
  double var = s2 / M - shift_mean * shift_mean;
  if (var < 0.0) var = 0.0;
  const double mean = (double)unisal_bn_load(x, NHWC ? (unsigned int)c : (unsigned int)c * S) + shift_mean;
  save_mean[c] = (float)mean;
  save_invstd[c] = (float)(1.0 / sqrt(var + (double)eps));
  const double unbiased = M > 1 ? var * M / (M - 1) : var;
  running_mean[c] = (float)((1.0 - momentum) * running_mean[c] + momentum * mean);
  running_var[c] = (float)((1.0 - momentum) * running_var[c] + momentum * unbiased);
}

// y = (x - mean) * invstd * gamma + beta, grid-stride over all N * C * S values.
template <typename T, bool NHWC>
__device__ void unisal_bn_normalize(const T* __restrict__ x, T* __restrict__ y, const float* __restrict__ mean,
                                    const float* __restrict__ invstd, const float* __restrict__ gamma,
                                    const float* __restrict__ beta, unsigned int C, unsigned int S,
                                    unsigned int total) {
  const unsigned int first = blockIdx.x * blockDim.x + threadIdx.x;
  if (first >= total) return;
  for (typename UnisalBnWalks<NHWC>::Flat w(first, blockDim.x * gridDim.x, S, C); w.i < total; w.next()) {
    const float v = (unisal_bn_load(x, w.i) - mean[w.c]) * invstd[w.c];
    unisal_bn_store(y, w.i, v * gamma[w.c] + beta[w.c]);
  }
}

// partials[(c * P + j) * 2 + {0, 1}] = sum of dy, sum of dy * xhat over share j of channel c.
template <typename T, bool NHWC>
__device__ void unisal_bn_bwd_partials(const T* __restrict__ x, const T* __restrict__ dy,
                                       const float* __restrict__ mean, const float* __restrict__ invstd,
                                       float* __restrict__ partials, unsigned int C, unsigned int S, unsigned int M,
                                       unsigned int P) {
  const unsigned long long t = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
  if (t >= (unsigned long long)C * P) return;
  unsigned int c, j;
  unisal_bn_share<NHWC>(t, C, P, c, j);
  const float mu = mean[c], is = invstd[c];
  float s1 = 0.f, s2 = 0.f;
  typename UnisalBnWalks<NHWC>::Channel w(j, P, S);
  for (unsigned int m = j; m < M; m += P, w.next()) {
    const unsigned int i = w.at(c, C);
    const float g = unisal_bn_load(dy, i);
    s1 += g;
    s2 += g * (unisal_bn_load(x, i) - mu) * is;
  }
  partials[((unsigned long long)c * P + j) * 2] = s1;
  partials[((unsigned long long)c * P + j) * 2 + 1] = s2;
}

// One thread a channel: dbeta = sum of dy, dgamma = sum of dy * xhat.
extern "C" __global__ void unisal_bn_bwd_finalize(const float* __restrict__ partials, float* __restrict__ dgamma,
                                                  float* __restrict__ dbeta, unsigned int C, unsigned int P) {
  const unsigned long long c = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;
  if (c >= C) return;
  double s1, s2;
  unisal_bn_merge(partials, c, P, s1, s2);
  dbeta[c] = (float)s1;
  dgamma[c] = (float)s2;
}

// dx = gamma * invstd * (dy - dbeta / M - xhat * dgamma / M), grid-stride over all values.
template <typename T, bool NHWC>
__device__ void unisal_bn_dx(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ dx,
                             const float* __restrict__ mean, const float* __restrict__ invstd,
                             const float* __restrict__ gamma, const float* __restrict__ dgamma,
                             const float* __restrict__ dbeta, unsigned int C, unsigned int S, unsigned int M,
                             unsigned int total) {
  const float inv_m = 1.f / (float)M;
  const unsigned int first = blockIdx.x * blockDim.x + threadIdx.x;
  if (first >= total) return;
  for (typename UnisalBnWalks<NHWC>::Flat w(first, blockDim.x * gridDim.x, S, C); w.i < total; w.next()) {
    const unsigned int c = w.c;
    const float xhat = (unisal_bn_load(x, w.i) - mean[c]) * invstd[c];
    const float g = unisal_bn_load(dy, w.i) - dbeta[c] * inv_m - xhat * dgamma[c] * inv_m;
    unisal_bn_store(dx, w.i, gamma[c] * invstd[c] * g);
  }
}

// The entry points, for f32 (`_f32`) and bf16 (`_bf16`) activations, NCHW or (`_nhwc`) channels last.
#define UNISAL_BN_KERNELS(SUFFIX, T, NHWC)                                                                    \
  extern "C" __global__ void unisal_bn_partials_##SUFFIX(const T* x, float* partials, unsigned int C,      \
                                                         unsigned int S, unsigned int M, unsigned int P) {  \
    unisal_bn_partials<T, NHWC>(x, partials, C, S, M, P);                                                   \
  }                                                                                                          \
  extern "C" __global__ void unisal_bn_finalize_##SUFFIX(                                                   \
      const T* x, const float* partials, float* save_mean, float* save_invstd, float* running_mean,         \
      float* running_var, unsigned int C, unsigned int S, unsigned int M, unsigned int P, float eps,        \
      float momentum) {                                                                                      \
    unisal_bn_finalize<T, NHWC>(x, partials, save_mean, save_invstd, running_mean, running_var, C, S, M, P, \
                                eps, momentum);                                                              \
  }                                                                                                          \
  extern "C" __global__ void unisal_bn_normalize_##SUFFIX(const T* x, T* y, const float* mean,             \
                                                          const float* invstd, const float* gamma,          \
                                                          const float* beta, unsigned int C, unsigned int S, \
                                                          unsigned int total) {                              \
    unisal_bn_normalize<T, NHWC>(x, y, mean, invstd, gamma, beta, C, S, total);                             \
  }                                                                                                          \
  extern "C" __global__ void unisal_bn_bwd_partials_##SUFFIX(const T* x, const T* dy, const float* mean,   \
                                                             const float* invstd, float* partials,          \
                                                             unsigned int C, unsigned int S, unsigned int M, \
                                                             unsigned int P) {                               \
    unisal_bn_bwd_partials<T, NHWC>(x, dy, mean, invstd, partials, C, S, M, P);                             \
  }                                                                                                          \
  extern "C" __global__ void unisal_bn_dx_##SUFFIX(const T* x, const T* dy, T* dx, const float* mean,      \
                                                   const float* invstd, const float* gamma,                 \
                                                   const float* dgamma, const float* dbeta, unsigned int C, \
                                                   unsigned int S, unsigned int M, unsigned int total) {     \
    unisal_bn_dx<T, NHWC>(x, dy, dx, mean, invstd, gamma, dgamma, dbeta, C, S, M, total);                   \
  }

UNISAL_BN_KERNELS(f32, float, false)
UNISAL_BN_KERNELS(bf16, __nv_bfloat16, false)
UNISAL_BN_KERNELS(f32_nhwc, float, true)
UNISAL_BN_KERNELS(bf16_nhwc, __nv_bfloat16, true)
