// Checks of the table kernels of cuda/elementwise.cu run on the CPU (tests/cuda_kernels_on_cpu.rs puts the kernels'
// own source before this file, with blockIdx, threadIdx, blockDim and gridDim as globals and a loop over the grid):
// the parameter pack (unisal_pack_f32) and SGD over many parameters (unisal_sgd_multi_f32), with their tables laid
// out as nn/cuda_pack.rs and nn/cuda_sgd.rs lay them out. Prints "ok" or the first mismatch, and exits non-zero on one.

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <vector>

typedef unsigned long long u64;

template <class F> static void run(D3 grid, D3 block, F f) {
  gridDim = grid;
  blockDim = block;
  for (blockIdx.y = 0; blockIdx.y < grid.y; blockIdx.y++)
    for (blockIdx.x = 0; blockIdx.x < grid.x; blockIdx.x++)
      for (threadIdx.x = 0; threadIdx.x < block.x; threadIdx.x++) f();
}

static u64 addr(const float* p) { return (u64)(uintptr_t)p; }

static int fail(const char* what, int i, double got, double want) {
  std::printf("%s: value %d is %.9g, expected %.9g\n", what, i, got, want);
  return 1;
}

// Three pieces: a [3, 5, 2, 3] weight channels last at 8, a vector of 7 at 104, a [2, 4, 1, 1] weight at 112.
static int pack() {
  const int O = 3, C = 5, KH = 2, KW = 3, nw = O * C * KH * KW;
  std::vector<float> w(nw), v(7), w2(8), out(120, -1.f);
  for (int i = 0; i < nw; i++) w[i] = i + 1.f;
  for (int i = 0; i < 7; i++) v[i] = 1000.f + i;
  for (int i = 0; i < 8; i++) w2[i] = 2000.f + i;
  for (int i = 0; i < 120; i++) out[i] = 0.f;
  std::vector<u64> t = {addr(w.data()), 8, (u64)nw, (u64)C, (u64)(KH * KW), 1,
                        addr(v.data()), 104, 7, 1, 1, 0,
                        addr(w2.data()), 112, 8, 1, 1, 0};
  run({2, 3, 1}, {7, 1, 1}, [&] { unisal_pack_f32(t.data(), out.data()); });
  for (int o = 0; o < O; o++)
    for (int kh = 0; kh < KH; kh++)
      for (int kw = 0; kw < KW; kw++)
        for (int c = 0; c < C; c++) {
          int at = 8 + ((o * KH + kh) * KW + kw) * C + c;
          float want = w[((o * C + c) * KH + kh) * KW + kw];
          if (out[at] != want) return fail("pack, channels-last weight", at, out[at], want);
        }
  for (int i = 0; i < 7; i++)
    if (out[104 + i] != v[i]) return fail("pack, vector", 104 + i, out[104 + i], v[i]);
  for (int i = 0; i < 8; i++)
    if (out[112 + i] != w2[i]) return fail("pack, weight", 112 + i, out[112 + i], w2[i]);
  for (int i : {0, 7, 98, 103, 111})
    if (out[i] != 0.f) return fail("pack, a gap", i, out[i], 0.0);
  return 0;
}

// Two parameters in one launch over three steps: a [2, 3, 2, 2] weight whose gradient is stored [2, 2, 2, 3]
// (channels last, read through strides [12, 1, 6, 3]) and a vector of 5 whose gradient sits at an offset; with
// momentum 0.9 and without.
static int sgd(float mom) {
  const int n = 24, m = 5;
  const float lr = 0.1f, wd = 1e-3f;
  std::vector<float> W(n), B(n, 7.f), G(n), V(m), BV(m, 7.f), GV(9);
  for (int i = 0; i < n; i++) W[i] = 0.1f * i - 1.f, G[i] = 0.05f * (i % 7) - 0.1f;
  for (int i = 0; i < m; i++) V[i] = 0.3f * i;
  for (int i = 0; i < 9; i++) GV[i] = 0.02f * i - 0.05f;
  std::vector<float> Wr = W, Br(n), Vr = V, BVr(m);
  for (int step = 0; step < 3; step++) {
    u64 first = step == 0 ? 2 : 0;
    std::vector<u64> e = {addr(W.data()), mom != 0.f ? addr(B.data()) : 0, addr(G.data()), (u64)n, 2, 3, 2, 2,
                          12, 1, 6, 3, 1 | first,
                          addr(V.data()), mom != 0.f ? addr(BV.data()) : 0, addr(GV.data() + 4), (u64)m, 1, 1, 1, 1,
                          0, 0, 0, 0, first};
    run({2, 2, 1}, {3, 1, 1}, [&] { unisal_sgd_multi_f32(e.data(), lr, mom, wd); });
    for (int o = 0; o < 2; o++)
      for (int c = 0; c < 3; c++)
        for (int kh = 0; kh < 2; kh++)
          for (int kw = 0; kw < 2; kw++) {
            int i = ((o * 3 + c) * 2 + kh) * 2 + kw;
            float d = G[o * 12 + kh * 6 + kw * 3 + c] + wd * Wr[i];
            float b = (step == 0 || mom == 0.f) ? d : mom * Br[i] + d;
            Br[i] = b;
            Wr[i] -= lr * b;
          }
    for (int i = 0; i < m; i++) {
      float d = GV[4 + i] + wd * Vr[i];
      float b = (step == 0 || mom == 0.f) ? d : mom * BVr[i] + d;
      BVr[i] = b;
      Vr[i] -= lr * b;
    }
  }
  for (int i = 0; i < n; i++)
    if (std::fabs(W[i] - Wr[i]) > 1e-6f) return fail("sgd, strided weight", i, W[i], Wr[i]);
  for (int i = 0; i < m; i++)
    if (std::fabs(V[i] - Vr[i]) > 1e-6f) return fail("sgd, vector", i, V[i], Vr[i]);
  if (mom == 0.f && (B[0] != 7.f || BV[0] != 7.f)) return fail("sgd without momentum, a buffer", 0, B[0], 7.0);
  return 0;
}

int main() {
  if (pack() || sgd(0.9f) || sgd(0.f)) return 1;
  std::printf("ok\n");
  return 0;
}
