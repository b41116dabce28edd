// Checks of the batch norm kernels of cuda/batchnorm.cu run on the CPU (tests/cuda_kernels_on_cpu.rs puts
// prelude.hpp and the whole .cu file before this file): the forward (partials, finalize, normalize) and the backward
// (partials, finalize, dx) in f32 and bf16, NCHW and channels last, against the same arithmetic written out in f64.
// Channels with a mean far from zero (100 + 10 c), as the shift about each channel's first value must keep the
// variance exact. Shares of a channel that do not divide its values evenly, and a grid with more threads than the
// work. Prints "ok" or the first mismatch.

#include <vector>

namespace {

// The geometry and layout of the case being checked (set by `main`).
unsigned N, C, S, M, P, TOTAL;
bool CHANNELS_LAST;

// Where value s of sample n's channel c sits.
unsigned at(unsigned n, unsigned c, unsigned s) { return CHANNELS_LAST ? (n * S + s) * C + c : (n * C + c) * S + s; }

float x_value(unsigned i, unsigned c) { return 100.f + 10.f * c + 0.37f * (float)((i * 7919u) % 23u) - 4.f; }

float dy_value(unsigned i) { return 0.05f * (float)((i * 104729u) % 31u) - 0.7f; }

template <typename T> float back(T v);
template <> float back<float>(float v) { return v; }
template <> float back<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T> T to(float v);
template <> float to<float>(float v) { return v; }
template <> __nv_bfloat16 to<__nv_bfloat16>(float v) { return __float2bfloat16(v); }

// Relative closeness: |got - want| <= tol * max(1, |want|).
bool near(double got, double want, double tol) { return std::fabs(got - want) <= tol * std::fmax(1.0, std::fabs(want)); }

template <typename T, class Partials, class Finalize, class Normalize, class BwdPartials, class Dx>
int check(const char* what, double tol_y, D3 grid, Partials partials, Finalize finalize, Normalize normalize,
          BwdPartials bwd_partials, Dx dx_kernel) {
  std::vector<T> x(TOTAL), y(TOTAL), dy(TOTAL), dx(TOTAL);
  for (unsigned n = 0; n < N; n++)
    for (unsigned c = 0; c < C; c++)
      for (unsigned s = 0; s < S; s++) {
        const unsigned i = at(n, c, s);
        x[i] = to<T>(x_value(i, c)), dy[i] = to<T>(dy_value(i));
      }
  std::vector<float> gamma(C), beta(C), rm(C, 0.5f), rv(C, 2.f), mean(C), invstd(C), part(C * P * 2);
  std::vector<float> dgamma(C), dbeta(C);
  for (unsigned c = 0; c < C; c++) gamma[c] = 0.5f + 0.25f * c, beta[c] = 0.1f * c - 0.2f;
  const float eps = 1e-5f, momentum = 0.1f;
  // The shares and channels with more threads than work (8 a block); `grid` blocks of 8 for the grid-stride ones.
  const D3 block = {8, 1, 1}, shares = {(C * P + 7) / 8, 1, 1}, channels = {(C + 7) / 8, 1, 1};
  run(shares, block, [&] { partials(x.data(), part.data()); });
  run(channels, block, [&] { finalize(x.data(), part.data(), mean.data(), invstd.data(), rm.data(), rv.data(), eps, momentum); });
  run(grid, block, [&] { normalize(x.data(), y.data(), mean.data(), invstd.data(), gamma.data(), beta.data()); });
  run(shares, block, [&] { bwd_partials(x.data(), dy.data(), mean.data(), invstd.data(), part.data()); });
  run(channels, block, [&] { unisal_bn_bwd_finalize(part.data(), dgamma.data(), dbeta.data(), C, P); });
  run(grid, block, [&] {
    dx_kernel(x.data(), dy.data(), dx.data(), mean.data(), invstd.data(), gamma.data(), dgamma.data(), dbeta.data());
  });
  for (unsigned c = 0; c < C; c++) {
    double sum = 0, sq = 0, g1 = 0, g2 = 0;
    for (unsigned n = 0; n < N; n++)
      for (unsigned s = 0; s < S; s++) sum += back(x[at(n, c, s)]);
    const double mu = sum / M;
    for (unsigned n = 0; n < N; n++)
      for (unsigned s = 0; s < S; s++) sq += std::pow(back(x[at(n, c, s)]) - mu, 2);
    const double var = sq / M, is = 1.0 / std::sqrt(var + eps);
    if (!near(mean[c], mu, 1e-6)) return fail(what, c, mean[c], mu);
    if (!near(invstd[c], is, 1e-4)) return fail(what, 100 + c, invstd[c], is);
    if (!near(rm[c], 0.9 * 0.5 + 0.1 * mu, 1e-6)) return fail(what, 200 + c, rm[c], 0.9 * 0.5 + 0.1 * mu);
    const double rv_want = 0.9 * 2.0 + 0.1 * var * M / (M - 1);
    if (!near(rv[c], rv_want, 1e-4)) return fail(what, 300 + c, rv[c], rv_want);
    for (unsigned n = 0; n < N; n++)
      for (unsigned s = 0; s < S; s++) {
        const unsigned i = at(n, c, s);
        const double xhat = (back(x[i]) - mu) * is, want = xhat * gamma[c] + beta[c];
        if (!near(back(y[i]), want, tol_y)) return fail(what, 1000 + i, back(y[i]), want);
        g1 += back(dy[i]), g2 += back(dy[i]) * xhat;
      }
    if (!near(dbeta[c], g1, 1e-5)) return fail(what, 400 + c, dbeta[c], g1);
    if (!near(dgamma[c], g2, 1e-4)) return fail(what, 500 + c, dgamma[c], g2);
    for (unsigned n = 0; n < N; n++)
      for (unsigned s = 0; s < S; s++) {
        const unsigned i = at(n, c, s);
        const double xhat = (back(x[i]) - mu) * is;
        const double want = gamma[c] * is * (back(dy[i]) - g1 / M - xhat * g2 / M);
        if (!near(back(dx[i]), want, tol_y)) return fail(what, 2000 + i, back(dx[i]), want);
      }
  }
  return 0;
}

}  // namespace

// Both types on one geometry and layout (kernels of the suffix SFX: f32##SFX and bf16##SFX), the grid-stride kernels
// on `grid`.
#define UNISAL_BOTH(NAME, SFX)                                                                                 \
  int NAME(D3 grid) {                                                                                        \
    typedef __nv_bfloat16 B;                                                                                 \
    if (check<float>(                                                                                        \
            "batch norm f32" #SFX, 1e-4, grid,                                                              \
            [](const float* x, float* p) { unisal_bn_partials_f32##SFX(x, p, C, S, M, P); },                \
            [](const float* x, const float* p, float* mu, float* is, float* rm, float* rv, float e, float m) { \
              unisal_bn_finalize_f32##SFX(x, p, mu, is, rm, rv, C, S, M, P, e, m);                          \
            },                                                                                               \
            [](const float* x, float* y, const float* mu, const float* is, const float* g, const float* b) { \
              unisal_bn_normalize_f32##SFX(x, y, mu, is, g, b, C, S, TOTAL);                                \
            },                                                                                               \
            [](const float* x, const float* dy, const float* mu, const float* is, float* p) {               \
              unisal_bn_bwd_partials_f32##SFX(x, dy, mu, is, p, C, S, M, P);                                \
            },                                                                                               \
            [](const float* x, const float* dy, float* dx, const float* mu, const float* is, const float* g, \
               const float* dg, const float* db) {                                                          \
              unisal_bn_dx_f32##SFX(x, dy, dx, mu, is, g, dg, db, C, S, M, TOTAL);                          \
            }))                                                                                              \
      return 1;                                                                                              \
    return check<B>(                                                                                         \
        "batch norm bf16" #SFX, 1e-2, grid,                                                                 \
        [](const B* x, float* p) { unisal_bn_partials_bf16##SFX(x, p, C, S, M, P); },                       \
        [](const B* x, const float* p, float* mu, float* is, float* rm, float* rv, float e, float m) {      \
          unisal_bn_finalize_bf16##SFX(x, p, mu, is, rm, rv, C, S, M, P, e, m);                             \
        },                                                                                                   \
        [](const B* x, B* y, const float* mu, const float* is, const float* g, const float* b) {            \
          unisal_bn_normalize_bf16##SFX(x, y, mu, is, g, b, C, S, TOTAL);                                   \
        },                                                                                                   \
        [](const B* x, const B* dy, const float* mu, const float* is, float* p) {                           \
          unisal_bn_bwd_partials_bf16##SFX(x, dy, mu, is, p, C, S, M, P);                                   \
        },                                                                                                   \
        [](const B* x, const B* dy, B* dx, const float* mu, const float* is, const float* g, const float* dg, \
           const float* db) { unisal_bn_dx_bf16##SFX(x, dy, dx, mu, is, g, dg, db, C, S, M, TOTAL); });    \
  }

UNISAL_BOTH(nchw, )
UNISAL_BOTH(nhwc, _nhwc)

// Both layouts.
int both(D3 grid) {
  CHANNELS_LAST = false;
  if (nchw(grid)) return 1;
  CHANNELS_LAST = true;
  return nhwc(grid);
}

void geometry(unsigned n, unsigned c, unsigned h, unsigned w, unsigned p) {
  N = n, C = c, S = h * w, M = n * S, P = p, TOTAL = n * c * S;
}

int main() {
  // 3 x 5 x 4 x 3: 4 shares a channel, fewer than its 12 values a plane; a stride of 16 over 180 values.
  geometry(3, 5, 4, 3, 4);
  if (both({2, 1, 1})) return 1;
  // 4 x 5 x 1 x 2: 7 shares, more than a plane's 2 values (the walk's carries); a stride of 24, more than a
  // sample's 10 values (the channel's step past C; channels last, 24 % 5 = 4 a step).
  geometry(4, 5, 1, 2, 7);
  if (both({3, 1, 1})) return 1;
  std::printf("ok\n");
  return 0;
}
