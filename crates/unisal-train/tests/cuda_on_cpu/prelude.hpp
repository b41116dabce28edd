// What the kernels of cuda/*.cu need of CUDA, for compiling them as plain C++ on the CPU
// (tests/cuda_kernels_on_cpu.rs): the qualifiers as nothing, the launch's indices as globals that `run` (below)
// loops over, the vector types, and bf16 with round-to-nearest-even conversions (NaN kept), as cuda_bf16.h defines
// them; and the checks' helpers, `run` and `fail`.
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>

#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__

struct D3 {
  unsigned long long x, y, z;
};
static D3 blockIdx, threadIdx, blockDim, gridDim;

struct float2 {
  float x, y;
};
struct float4 {
  float x, y, z, w;
};
struct uint4 {
  unsigned int x, y, z, w;
};
struct __nv_bfloat16 {
  uint16_t bits;
};
struct __nv_bfloat162 {
  __nv_bfloat16 x, y;
};

static inline float __bfloat162float(__nv_bfloat16 h) {
  uint32_t u = (uint32_t)h.bits << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
static inline __nv_bfloat16 __float2bfloat16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {(uint16_t)((u >> 16) | 0x40u)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return {(uint16_t)(u >> 16)};
}
static inline float2 __bfloat1622float2(__nv_bfloat162 h) { return {__bfloat162float(h.x), __bfloat162float(h.y)}; }
static inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return {__float2bfloat16(a), __float2bfloat16(b)};
}

typedef unsigned long long u64;

// A launch: each thread's body one after the other, over the grid (x, then y) and the block's x.
template <class F> static void run(D3 grid, D3 block, F f) {
  gridDim = grid;
  blockDim = block;
  for (blockIdx.y = 0; blockIdx.y < grid.y; blockIdx.y++)
    for (blockIdx.x = 0; blockIdx.x < grid.x; blockIdx.x++)
      for (threadIdx.x = 0; threadIdx.x < block.x; threadIdx.x++) f();
}

static int fail(const char* what, int i, double got, double want) {
  std::printf("%s: value %d is %.9g, expected %.9g\n", what, i, got, want);
  return 1;
}
