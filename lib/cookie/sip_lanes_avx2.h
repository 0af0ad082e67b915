#pragma once
// SipHash state for four messages in AVX2 registers (private to
// lib/cookie): lane l of each register is message l's v0, v1, v2 or v3,
// and every operation below is siphash.h's, lane by lane. Used by the
// generic batch kernels (siphash_batch.cc) and the cookie codec's burst
// path (cookie_avx2.cc).
//
// Everything here is compiled for AVX2 by attribute (the project's -march
// does not include it) and must only run after SipBatchPathSupported(
// SipBatchPath::kAvx2); the helpers are forced inline into kernels with
// the same attribute, which GCC and Clang allow because the kernel's
// target includes the helper's.

#if defined(__x86_64__)
#define MOAT_SIP_AVX2 1
#else
#define MOAT_SIP_AVX2 0
#endif

#if MOAT_SIP_AVX2
#include <immintrin.h>

#include <cstdint>

#include "moat/cookie/siphash.h"

#define MOAT_AVX2 __attribute__((target("avx2")))
#define MOAT_AVX2_INLINE __attribute__((target("avx2"), always_inline)) inline

namespace moat::cookie::lanes {

// Rotate each 64-bit lane left by B. AVX2 has no 64-bit rotate (AVX-512
// does): by 32 is a dword shuffle and by 16 a byte shuffle, one
// instruction each; the others are two shifts and an or. (Tried and
// measured no faster on AMD Zen 2: 17 as 16 then 1 with an add, 13 and 21
// through 16-bit multiplies; the kernel is bound by the total count of
// vector operations, not by the shift port.)
template <int B>
MOAT_AVX2_INLINE __m256i Rotl(__m256i x) {
  if constexpr (B == 32) {
    return _mm256_shuffle_epi32(x, _MM_SHUFFLE(2, 3, 0, 1));
  } else if constexpr (B == 16) {
    // Byte k of each result lane is byte (k - 2) mod 8 of the source lane.
    const __m256i rot16 = _mm256_setr_epi8(6, 7, 0, 1, 2, 3, 4, 5, 14, 15, 8, 9, 10, 11, 12, 13, 6,
                                           7, 0, 1, 2, 3, 4, 5, 14, 15, 8, 9, 10, 11, 12, 13);
    return _mm256_shuffle_epi8(x, rot16);
  } else {
    return _mm256_or_si256(_mm256_slli_epi64(x, B), _mm256_srli_epi64(x, 64 - B));
  }
}

struct Lanes {
  __m256i v0, v1, v2, v3;
};

// internal::SipState::Round, lane-wise.
MOAT_AVX2_INLINE void Round(Lanes& s) {
  s.v0 = _mm256_add_epi64(s.v0, s.v1);
  s.v1 = Rotl<13>(s.v1);
  s.v1 = _mm256_xor_si256(s.v1, s.v0);
  s.v0 = Rotl<32>(s.v0);
  s.v2 = _mm256_add_epi64(s.v2, s.v3);
  s.v3 = Rotl<16>(s.v3);
  s.v3 = _mm256_xor_si256(s.v3, s.v2);
  s.v0 = _mm256_add_epi64(s.v0, s.v3);
  s.v3 = Rotl<21>(s.v3);
  s.v3 = _mm256_xor_si256(s.v3, s.v0);
  s.v2 = _mm256_add_epi64(s.v2, s.v1);
  s.v1 = Rotl<17>(s.v1);
  s.v1 = _mm256_xor_si256(s.v1, s.v2);
  s.v2 = Rotl<32>(s.v2);
}

// The initial state (internal::SipState) of two keys, broadcast to all
// lanes, so a lane can take either by mask.
struct KeyInit {
  __m256i v[2][4];
};

MOAT_AVX2_INLINE KeyInit MakeKeyInit(const SipKey keys[2]) {
  KeyInit ki;
  for (int k = 0; k < 2; ++k) {
    const internal::SipState s(keys[k]);
    ki.v[k][0] = _mm256_set1_epi64x(static_cast<long long>(s.v0));
    ki.v[k][1] = _mm256_set1_epi64x(static_cast<long long>(s.v1));
    ki.v[k][2] = _mm256_set1_epi64x(static_cast<long long>(s.v2));
    ki.v[k][3] = _mm256_set1_epi64x(static_cast<long long>(s.v3));
  }
  return ki;
}

// Lanes keyed by keys[1] where use_key1 is all ones, keys[0] where zero.
MOAT_AVX2_INLINE Lanes InitLanes(const KeyInit& ki, __m256i use_key1) {
  return Lanes{_mm256_blendv_epi8(ki.v[0][0], ki.v[1][0], use_key1),
               _mm256_blendv_epi8(ki.v[0][1], ki.v[1][1], use_key1),
               _mm256_blendv_epi8(ki.v[0][2], ki.v[1][2], use_key1),
               _mm256_blendv_epi8(ki.v[0][3], ki.v[1][3], use_key1)};
}

// SipState::Compress<C> and Finish<D>, lane-wise.
template <int C>
MOAT_AVX2_INLINE void Compress(Lanes& s, __m256i m) {
  s.v3 = _mm256_xor_si256(s.v3, m);
  for (int i = 0; i < C; ++i) Round(s);
  s.v0 = _mm256_xor_si256(s.v0, m);
}

MOAT_AVX2_INLINE void StartFinish(Lanes& s) {
  s.v2 = _mm256_xor_si256(s.v2, _mm256_set1_epi64x(0xff));
}

MOAT_AVX2_INLINE __m256i Digest(const Lanes& s) {
  return _mm256_xor_si256(_mm256_xor_si256(s.v0, s.v1), _mm256_xor_si256(s.v2, s.v3));
}

MOAT_AVX2_INLINE __m256i Load4(const uint64_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

}  // namespace moat::cookie::lanes

#endif  // MOAT_SIP_AVX2
