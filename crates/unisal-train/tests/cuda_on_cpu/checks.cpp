// Checks of the kernels of cuda/elementwise.cu run on the CPU (tests/cuda_kernels_on_cpu.rs puts prelude.hpp and the
// whole .cu file before this file): prelude.hpp's `run` loops over the grid, each thread's body one after the other. Every kernel
// against the arithmetic written out, through both paths of the vectorised ones (16-byte aligned buffers, and a
// view one value off) and their tails; the table kernels (the parameter pack, SGD over many parameters) with their
// tables laid out as nn/kernel_tables.rs lays them out (its unit tests check the same entries). Prints "ok" or the
// first mismatch, and exits non-zero on one.

#include <vector>

static u64 addr(const float* p) { return (u64)(uintptr_t)p; }

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
    // Without momentum the weight's entry still names a buffer, which must stay untouched, and the vector's names
    // none (0), which must not be read.
    std::vector<u64> e = {addr(W.data()), addr(B.data()), addr(G.data()), (u64)n, 2, 3, 2, 2,
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
  if (mom == 0.f)
    for (int i = 0; i < n; i++)
      if (B[i] != 7.f) return fail("sgd without momentum, a buffer", i, B[i], 7.0);
  return 0;
}

typedef void (*Map)(const float*, const float*, const float*, float*, unsigned long long, float, float, float);
typedef void (*MapBf16)(const __nv_bfloat16*, const __nv_bfloat16*, const __nv_bfloat16*, __nv_bfloat16*,
                        unsigned long long, float, float, float);

static float ref_relu(float x, float) { return x < 0.f ? 0.f : x; }
static float ref_add_relu(float x, float y) { return x + y < 0.f ? 0.f : x + y; }
static float ref_mask(float dy, float y) { return y > 0.f ? dy : 0.f; }

// Inputs of 45 values (ten a third negative, one exactly 0), out of 48-value buffers: at offset 0 the vectorised
// path and its tail run; at offset 1 (4 bytes, or 2 in bf16, off 16-byte alignment) the one-at-a-time path. The
// launch is small (2 blocks of 3 threads), so every thread strides.
static float input(int k, int i) { return i == 5 ? 0.f : 0.37f * ((i * (7 + k)) % 19) - 2.1f; }

static int maps() {
  const int n = 45;
  const struct {
    const char* name;
    Map f32;
    MapBf16 bf16;
    float (*ref)(float, float);
  } all[] = {{"relu", unisal_relu_f32, unisal_relu_bf16, ref_relu},
             {"add_relu", unisal_add_relu_f32, unisal_add_relu_bf16, ref_add_relu},
             {"relu_mask", unisal_relu_mask_f32, unisal_relu_mask_bf16, ref_mask}};
  for (const auto& k : all)
    for (int off = 0; off < 2; off++) {
      alignas(16) float a[48], b[48], out[48];
      alignas(16) __nv_bfloat16 ah[48], bh[48], oh[48];
      for (int i = 0; i < 48; i++) {
        a[i] = input(0, i), b[i] = input(1, i), out[i] = -99.f;
        ah[i] = __float2bfloat16(a[i]), bh[i] = __float2bfloat16(b[i]), oh[i] = __float2bfloat16(-99.f);
      }
      run({2, 1, 1}, {3, 1, 1}, [&] { k.f32(a + off, b + off, a + off, out + off, n, 0.f, 0.f, 0.f); });
      run({2, 1, 1}, {3, 1, 1}, [&] { k.bf16(ah + off, bh + off, ah + off, oh + off, n, 0.f, 0.f, 0.f); });
      for (int i = 0; i < 48; i++) {
        bool in = i >= off && i < off + n;
        float want = in ? k.ref(a[i], b[i]) : -99.f;
        if (out[i] != want) return fail(k.name, i, out[i], want);
        float wh = in ? __bfloat162float(__float2bfloat16(k.ref(__bfloat162float(ah[i]), __bfloat162float(bh[i]))))
                      : -99.f;
        if (__bfloat162float(oh[i]) != wh) return fail(k.name, i, __bfloat162float(oh[i]), wh);
      }
    }
  return 0;
}

// The per-parameter SGD kernels: the first buffer, the buffer in place, the weight in place, the fused step.
static int sgd_kernels() {
  const int n = 11;
  const float lr = 0.1f, mom = 0.9f, wd = 0.01f;
  float w[n], g[n], buf[n], first[n], w2[n], buf2[n];
  for (int i = 0; i < n; i++) w[i] = w2[i] = 0.2f * i - 1.f, g[i] = 0.3f - 0.05f * i, buf[i] = buf2[i] = 0.5f;
  run({2, 1, 1}, {4, 1, 1}, [&] { unisal_sgd_buffer_f32(w, g, w, first, n, 0.f, wd, 0.f); });
  run({2, 1, 1}, {4, 1, 1}, [&] { unisal_sgd_buffer_in_place_f32(w, g, buf, n, mom, wd, 0.f); });
  run({2, 1, 1}, {4, 1, 1}, [&] { unisal_sgd_apply_in_place_f32(buf, buf, w, n, lr, 0.f, 0.f); });
  run({2, 1, 1}, {4, 1, 1}, [&] { unisal_sgd_step_in_place_f32(w2, g, buf2, n, mom, wd, lr); });
  for (int i = 0; i < n; i++) {
    float w0 = 0.2f * i - 1.f, d = g[i] + wd * w0, b = mom * 0.5f + d;
    if (std::fabs(first[i] - d) > 1e-6f) return fail("sgd first buffer", i, first[i], d);
    if (std::fabs(buf[i] - b) > 1e-6f) return fail("sgd buffer in place", i, buf[i], b);
    if (std::fabs(w[i] - (w0 - lr * b)) > 1e-6f) return fail("sgd apply in place", i, w[i], w0 - lr * b);
    if (std::fabs(buf2[i] - b) > 1e-6f || std::fabs(w2[i] - (w0 - lr * b)) > 1e-6f)
      return fail("sgd step in place", i, w2[i], w0 - lr * b);
  }
  return 0;
}

int main() {
  if (maps() || sgd_kernels() || pack() || sgd(0.9f) || sgd(0.f)) return 1;
  std::printf("ok\n");
  return 0;
}
