// Element-wise kernels of the GPU engine (feature `cuda`), compiled to PTX by build.rs and loaded by
// src/nn/cuda_kernels.rs. One signature for all: up to three inputs, one output, n values, three scalars; grid-stride
// loops over contiguous f32 buffers. Each mirrors a CPU kernel in Rust (same NaN behaviour).

#define UNISAL_MAP(name, body)                                                                        \
  extern "C" __global__ void name(const float* __restrict__ a, const float* __restrict__ b,          \
                                  const float* __restrict__ c, float* __restrict__ out,              \
                                  unsigned long long n, float p0, float p1, float p2) {              \
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;     \
         i += (unsigned long long)blockDim.x * gridDim.x) {                                           \
      body                                                                                            \
    }                                                                                                 \
  }

// relu(a): as the CPU's `max(x, 0)` (NaN stays NaN).
UNISAL_MAP(unisal_relu_f32, { float x = a[i]; out[i] = x < 0.f ? 0.f : x; })

// relu(a + b): the join of a residual block (elementwise_cpu.rs AddRelu).
UNISAL_MAP(unisal_add_relu_f32, { float s = a[i] + b[i]; out[i] = s < 0.f ? 0.f : s; })

// dy * [y > 0]: the gradient through a ReLU with output y (a = dy, b = y; elementwise_cpu.rs ReluMask).
UNISAL_MAP(unisal_relu_mask_f32, { out[i] = b[i] > 0.f ? a[i] : 0.f; })

// SGD's momentum buffer (optim.rs SgdBuffer): a = w, b = g, c = previous buffer; p0 = momentum,
// p1 = weight decay, p2 = 1 on a parameter's first step (the buffer is then d itself).
UNISAL_MAP(unisal_sgd_buffer_f32, {
  float d = b[i] + p1 * a[i];
  out[i] = p2 != 0.f ? d : p0 * c[i] + d;
})

// SGD's update (optim.rs SgdApply): a = w, b = buffer, p0 = learning rate.
UNISAL_MAP(unisal_sgd_apply_f32, { out[i] = a[i] - p0 * b[i]; })
