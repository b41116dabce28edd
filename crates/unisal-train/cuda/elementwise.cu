// Element-wise kernels of the GPU engine (feature `cuda`), compiled to PTX by build.rs and loaded by
// src/nn/cuda_kernels.rs. One signature for all: up to three inputs, one output, n values, three scalars; grid-stride
// loops over contiguous f32 (or, the `_bf16` ones, bf16) buffers. Each mirrors a CPU kernel in Rust (same NaN
// behaviour).

#include <cuda_bf16.h>

#define UNISAL_MAP_T(name, T, body)                                                                   \
  extern "C" __global__ void name(const T* __restrict__ a, const T* __restrict__ b,                  \
                                  const T* __restrict__ c, T* __restrict__ out,                      \
                                  unsigned long long n, float p0, float p1, float p2) {              \
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;     \
         i += (unsigned long long)blockDim.x * gridDim.x) {                                           \
      body                                                                                            \
    }                                                                                                 \
  }
#define UNISAL_MAP(name, body) UNISAL_MAP_T(name, float, body)

// The vectorised kernels' grid-stride start and step, the count done by 16-byte loads (none yet), and whether
// a, b (where read) and out are 16-byte aligned.
#define UNISAL_VEC_SETUP(B)                                                                            \
  const unsigned long long first = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x;         \
  const unsigned long long step = (unsigned long long)blockDim.x * gridDim.x;                         \
  unsigned long long done = 0;                                                                        \
  const bool aligned = ((reinterpret_cast<unsigned long long>(a) |                                    \
                         (B ? reinterpret_cast<unsigned long long>(b) : 0ull) |                       \
                         reinterpret_cast<unsigned long long>(out)) & 15ull) == 0;

// The f32 ReLU kernels take four values a thread: one 16-byte load of each input and one store, where the buffers
// are 16-byte aligned (candle's allocations are; a view at another offset may not be), then the rest one at a time.
// The launch gives them a quarter of the threads (cuda_kernels.rs). `f(a, b)` is the value; `B` says whether b is
// read (ReLU has one input).
#define UNISAL_MAP4(name, B, f)                                                                        \
  extern "C" __global__ void name(const float* __restrict__ a, const float* __restrict__ b,          \
                                  const float* __restrict__ c, float* __restrict__ out,              \
                                  unsigned long long n, float p0, float p1, float p2) {              \
    UNISAL_VEC_SETUP(B)                                                                               \
    if (aligned) {                                                                                    \
      const unsigned long long n4 = n / 4;                                                            \
      const float4* a4 = reinterpret_cast<const float4*>(a);                                          \
      const float4* b4 = reinterpret_cast<const float4*>(b);                                          \
      float4* o4 = reinterpret_cast<float4*>(out);                                                    \
      for (unsigned long long i = first; i < n4; i += step) {                                         \
        const float4 x = a4[i];                                                                       \
        const float4 y = B ? b4[i] : x;                                                               \
        float4 r;                                                                                     \
        r.x = f(x.x, y.x);                                                                            \
        r.y = f(x.y, y.y);                                                                            \
        r.z = f(x.z, y.z);                                                                            \
        r.w = f(x.w, y.w);                                                                            \
        o4[i] = r;                                                                                    \
      }                                                                                               \
      done = n4 * 4;                                                                                  \
    }                                                                                                 \
    for (unsigned long long i = done + first; i < n; i += step) {                                     \
      out[i] = f(a[i], B ? b[i] : a[i]);                                                              \
    }                                                                                                 \
  }

// relu(a): as the CPU's `max(x, 0)` (NaN stays NaN).
__device__ __forceinline__ float unisal_relu1(float x, float) { return x < 0.f ? 0.f : x; }
UNISAL_MAP4(unisal_relu_f32, 0, unisal_relu1)

// relu(a + b): the join of a residual block (elementwise_cpu.rs AddRelu).
__device__ __forceinline__ float unisal_add_relu1(float x, float y) {
  const float s = x + y;
  return s < 0.f ? 0.f : s;
}
UNISAL_MAP4(unisal_add_relu_f32, 1, unisal_add_relu1)

// dy * [y > 0]: the gradient through a ReLU with output y (a = dy, b = y; elementwise_cpu.rs ReluMask).
__device__ __forceinline__ float unisal_relu_mask1(float dy, float y) { return y > 0.f ? dy : 0.f; }
UNISAL_MAP4(unisal_relu_mask_f32, 1, unisal_relu_mask1)

// The same three in bf16 (mixed precision: bf16 activations), computed in f32 and rounded once (exact for ReLU
// and the mask, which pass values through). Eight values a thread: one 16-byte load of each input and one store
// where the buffers are 16-byte aligned, then the rest one at a time; the launch gives them an eighth of the
// threads (cuda_kernels.rs). A warp of 2-byte loads moves half a cache line a request; these move four.
#define UNISAL_MAP8_BF16(name, B, f)                                                                   \
  extern "C" __global__ void name(const __nv_bfloat16* __restrict__ a, const __nv_bfloat16* __restrict__ b, \
                                  const __nv_bfloat16* __restrict__ c, __nv_bfloat16* __restrict__ out,     \
                                  unsigned long long n, float p0, float p1, float p2) {              \
    UNISAL_VEC_SETUP(B)                                                                               \
    if (aligned) {                                                                                    \
      const unsigned long long n8 = n / 8;                                                            \
      const uint4* a8 = reinterpret_cast<const uint4*>(a);                                            \
      const uint4* b8 = reinterpret_cast<const uint4*>(b);                                            \
      uint4* o8 = reinterpret_cast<uint4*>(out);                                                      \
      for (unsigned long long i = first; i < n8; i += step) {                                         \
        const uint4 xa = a8[i];                                                                       \
        const uint4 xb = B ? b8[i] : xa;                                                              \
        const __nv_bfloat162* pa = reinterpret_cast<const __nv_bfloat162*>(&xa);                      \
        const __nv_bfloat162* pb = reinterpret_cast<const __nv_bfloat162*>(&xb);                      \
        uint4 r;                                                                                      \
        __nv_bfloat162* pr = reinterpret_cast<__nv_bfloat162*>(&r);                                   \
        for (int j = 0; j < 4; ++j) {                                                                 \
          const float2 x = __bfloat1622float2(pa[j]);                                                 \
          const float2 y = __bfloat1622float2(pb[j]);                                                 \
          pr[j] = __floats2bfloat162_rn(f(x.x, y.x), f(x.y, y.y));                                    \
        }                                                                                             \
        o8[i] = r;                                                                                    \
      }                                                                                               \
      done = n8 * 8;                                                                                  \
    }                                                                                                 \
    for (unsigned long long i = done + first; i < n; i += step) {                                     \
      out[i] = __float2bfloat16(f(__bfloat162float(a[i]), __bfloat162float(B ? b[i] : a[i])));       \
    }                                                                                                 \
  }

UNISAL_MAP8_BF16(unisal_relu_bf16, 0, unisal_relu1)
UNISAL_MAP8_BF16(unisal_add_relu_bf16, 1, unisal_add_relu1)
UNISAL_MAP8_BF16(unisal_relu_mask_bf16, 1, unisal_relu_mask1)

// SGD's momentum buffer on a parameter's first step (optim.rs SgdFirstBuffer): a = w, b = g; p1 = weight decay.
UNISAL_MAP(unisal_sgd_buffer_f32, { out[i] = b[i] + p1 * a[i]; })

// In-place updates: t is read and written at the same index only, so it is not `__restrict__`; a and b are
// read-only inputs of t's length.
#define UNISAL_UPDATE(name, body)                                                                      \
  extern "C" __global__ void name(const float* __restrict__ a, const float* __restrict__ b, float* t,  \
                                  unsigned long long n, float p0, float p1, float p2) {               \
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;      \
         i += (unsigned long long)blockDim.x * gridDim.x) {                                            \
      body                                                                                             \
    }                                                                                                  \
  }

// SGD's momentum buffer in place (optim.rs SgdBufferInPlace): t = buffer, a = w, b = g; p0 = momentum,
// p1 = weight decay.
UNISAL_UPDATE(unisal_sgd_buffer_in_place_f32, { t[i] = p0 * t[i] + (b[i] + p1 * a[i]); })

// SGD's update in place (optim.rs SgdApplyInPlace): t = w, a = buffer; p0 = learning rate.
UNISAL_UPDATE(unisal_sgd_apply_in_place_f32, { t[i] -= p0 * a[i]; })

// One whole SGD step in place, the two kernels above in one pass (optim.rs SgdBufferInPlace with then_apply):
// t = the momentum buffer, a = w, which is written too (the Rust side passes it as an input; the optimiser owns it),
// b = g; p0 = momentum, p1 = weight decay, p2 = learning rate. The three are distinct buffers, each element read and
// written by one thread.
extern "C" __global__ void unisal_sgd_step_in_place_f32(float* __restrict__ a, const float* __restrict__ b,
                                                        float* __restrict__ t,
                                                        unsigned long long n, float p0, float p1, float p2) {
  for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
       i += (unsigned long long)blockDim.x * gridDim.x) {
    float buf = p0 * t[i] + (b[i] + p1 * a[i]);
    t[i] = buf;
    a[i] -= p2 * buf;
  }
}

// SGD over many parameters in one launch (nn/cuda_sgd.rs): blockIdx.y picks a parameter's entry of the table, the
// x dimension strides over its values. An entry is 13 words: the weight, its momentum buffer (0 without
// momentum), the gradient, the count n, the weight's dims [4] and the gradient's strides [4] (in values; read
// only with flag 1: a gradient that is a strided 4-d view, such as a channels-last weight's piece of the block op's
// packed gradient), and the flags (1: strided gradient; 2: the parameter's first step, whose buffer is the
// gradient itself). The arithmetic is unisal_sgd_step_in_place_f32's (and, on a first step,
// unisal_sgd_buffer_f32's then unisal_sgd_apply_in_place_f32's): d = g + wd * w; b = d on a first step or without
// momentum, else momentum * buf + d; buf = b (with momentum); w -= lr * b.
extern "C" __global__ void unisal_sgd_multi_f32(const unsigned long long* __restrict__ table, float lr,
                                                float momentum, float wd) {
  const unsigned long long* e = table + 13ull * blockIdx.y;
  float* w = reinterpret_cast<float*>(e[0]);
  float* buf = reinterpret_cast<float*>(e[1]);
  const float* g = reinterpret_cast<const float*>(e[2]);
  const unsigned long long n = e[3];
  const bool strided = (e[12] & 1ull) != 0, first = (e[12] & 2ull) != 0;
  for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
       i += (unsigned long long)blockDim.x * gridDim.x) {
    float gv;
    if (strided) {
      unsigned long long r = i;
      const unsigned long long i3 = r % e[7];
      r /= e[7];
      const unsigned long long i2 = r % e[6];
      r /= e[6];
      const unsigned long long i1 = r % e[5];
      const unsigned long long i0 = r / e[5];
      gv = g[i0 * e[8] + i1 * e[9] + i2 * e[10] + i3 * e[11]];
    } else {
      gv = g[i];
    }
    const float wv = w[i];
    float b = gv + wd * wv;
    if (momentum != 0.0f) {
      if (!first) b = momentum * buf[i] + b;
      buf[i] = b;
    }
    w[i] = wv - lr * b;
  }
}

// The block op's parameter pack in one launch (nn/cuda_pack.rs): blockIdx.y picks a piece of the table, the x
// dimension strides over its values. An entry is 6 words: the source (a variable's f32 values), the offset of the
// piece in `out`, its count n, and, for a weight packed channels last (flag in the last word), C and kh * kw: the
// piece is then [O, kh, kw, C] of a source [O, C, kh, kw].
extern "C" __global__ void unisal_pack_f32(const unsigned long long* __restrict__ table, float* __restrict__ out) {
  const unsigned long long* e = table + 6ull * blockIdx.y;
  const float* src = reinterpret_cast<const float*>(e[0]);
  float* dst = out + e[1];
  const unsigned long long n = e[2], c = e[3], kk = e[4];
  const bool nhwc = e[5] != 0ull;
  for (unsigned long long j = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; j < n;
       j += (unsigned long long)blockDim.x * gridDim.x) {
    if (nhwc) {
      const unsigned long long ci = j % c, r = j / c;
      const unsigned long long s = r % kk, o = r / kk;
      dst[j] = src[(o * c + ci) * kk + s];
    } else {
      dst[j] = src[j];
    }
  }
}
