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

// relu(a): as the CPU's `max(x, 0)` (NaN stays NaN).
UNISAL_MAP(unisal_relu_f32, { float x = a[i]; out[i] = x < 0.f ? 0.f : x; })

// relu(a + b): the join of a residual block (elementwise_cpu.rs AddRelu).
UNISAL_MAP(unisal_add_relu_f32, { float s = a[i] + b[i]; out[i] = s < 0.f ? 0.f : s; })

// dy * [y > 0]: the gradient through a ReLU with output y (a = dy, b = y; elementwise_cpu.rs ReluMask).
UNISAL_MAP(unisal_relu_mask_f32, { out[i] = b[i] > 0.f ? a[i] : 0.f; })

// The same three in bf16 (mixed precision: bf16 activations), computed in f32 and rounded once.
#define UNISAL_MAP_BF16(name, body) UNISAL_MAP_T(name, __nv_bfloat16, body)

UNISAL_MAP_BF16(unisal_relu_bf16, { out[i] = __bfloat162float(a[i]) < 0.f ? __float2bfloat16(0.f) : a[i]; })
UNISAL_MAP_BF16(unisal_add_relu_bf16, {
  float s = __bfloat162float(a[i]) + __bfloat162float(b[i]);
  out[i] = __float2bfloat16(s < 0.f ? 0.f : s);
})
UNISAL_MAP_BF16(unisal_relu_mask_bf16, { out[i] = __bfloat162float(b[i]) > 0.f ? a[i] : __float2bfloat16(0.f); })

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
