// Vector math shared by the CPU scan kernels (selective_scan.cpp, scan_channels_last.cpp).
#pragma once

#include <ATen/cpu/vec/vec.h>

namespace videomamba {

using Vec = at::vec::Vectorized<float>;

// exp, inlined: the decay exp(dt * A) of every state step, and inside softplus and sigmoid (Sleef's exp is an
// out-of-line call, and ATen's exp_u20 loses up to 20 ULP, which shows in dA summed over long sequences): x = n ln2 + r with
// |r| <= ln2/2, exp(r) by its degree-7 Taylor polynomial (truncation < 1e-8 relative), times 2^n.
// Scalar builds use ATen's exp.
inline Vec exp_poly(const Vec& r) {
  Vec p(1.f / 5040.f);
  for (const float c : {1.f / 720.f, 1.f / 120.f, 1.f / 24.f, 1.f / 6.f, 0.5f, 1.f, 1.f}) {
    p = at::vec::fmadd(p, r, Vec(c));
  }
  return p;
}
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kLn2Hi = 0.693145751953125f;        // ln 2 split so that n * kLn2Hi is exact
constexpr float kLn2Lo = 1.428606765330187045e-06f;

#if defined(CPU_CAPABILITY_AVX512)
inline Vec exp_inline(const Vec& v) {
  const __m512 x = _mm512_max_ps(_mm512_min_ps(v, _mm512_set1_ps(88.7f)), _mm512_set1_ps(-104.f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  return _mm512_scalef_ps(exp_poly(Vec(r)), n);  // p * 2^n, flushing to 0 below the float range
}
#elif defined(CPU_CAPABILITY_AVX2)
inline Vec exp_inline(const Vec& v) {
  const __m256 below = _mm256_cmp_ps(v, _mm256_set1_ps(-87.3f), _CMP_LT_OQ);
  const __m256 x = _mm256_max_ps(_mm256_min_ps(v, _mm256_set1_ps(88.7f)), _mm256_set1_ps(-87.3f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  const __m256i n_int = _mm256_cvtps_epi32(n);
  const __m256 scale = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n_int, _mm256_set1_epi32(127)), 23));
  const __m256 result = _mm256_mul_ps(exp_poly(Vec(r)), scale);
  return _mm256_andnot_ps(below, result);  // exp(x) < FLT_MIN: 0, like the flush in the AVX-512 path
}
#else
inline Vec exp_inline(const Vec& x) { return x.exp(); }
#endif

inline Vec sigmoid(const Vec& x) { return Vec(1.f) / (Vec(1.f) + exp_inline(x.neg())); }

// softplus(x) = log1p(exp(x)) as max(x, 0) + log1p(e), e = exp(-|x|) in (0, 1], and log1p(e) = 2 atanh(s) with
// s = e / (2 + e) in (0, 1/3]: the odd series of atanh to s^17 (next term < 2e-10 relative). Sleef's log1p and exp
// cost about a third of a channels-last scan step; this is a few ULP of torch's softplus at far less.
inline Vec softplus(const Vec& x) {
  const Vec e = exp_inline(x.abs().neg());
  const Vec s = e / (Vec(2.f) + e);
  const Vec s2 = s * s;
  Vec p(1.f / 17.f);
  for (const float c : {1.f / 15.f, 1.f / 13.f, 1.f / 11.f, 1.f / 9.f, 1.f / 7.f, 1.f / 5.f, 1.f / 3.f, 1.f}) {
    p = at::vec::fmadd(p, s2, Vec(c));
  }
  return at::vec::maximum(x, Vec(0.f)) + Vec(2.f) * s * p;
}

}  // namespace videomamba
