#include "moat/cookie/siphash_batch.h"

#include <atomic>
#include <cstring>

#include "sip_lanes_avx2.h"

namespace moat::cookie {
namespace {

// 0xff = not yet detected. Detected lazily, not in a static initializer,
// so a batch call from another translation unit's start-up code still
// finds a valid path.
constexpr uint8_t kUndetected = 0xff;
constinit std::atomic<uint8_t> g_path{kUndetected};

bool CpuHasAvx2() {
#if MOAT_SIP_AVX2
  // GCC's and Clang's runtimes report avx2 only when the OS also saves the
  // YMM registers (XGETBV), so this is "AVX2 usable", on Intel and AMD.
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2");
#else
  return false;
#endif
}

SipBatchPath Detect() { return CpuHasAvx2() ? SipBatchPath::kAvx2 : SipBatchPath::kScalar; }

SipBatchPath Path() {
  uint8_t p = g_path.load(std::memory_order_relaxed);
  if (p == kUndetected) [[unlikely]] {
    p = static_cast<uint8_t>(Detect());
    g_path.store(p, std::memory_order_relaxed);
  }
  return static_cast<SipBatchPath>(p);
}

// The scalar path: siphash.h's template per message, with the block count
// a template argument so each length gets the fully unrolled body.
template <int C, int D, size_t NB>
void ScalarBatch(const SipKey keys[2], const uint8_t* key_ids, const uint64_t* blocks,
                 size_t stride, size_t n, uint64_t* out) {
  for (size_t i = 0; i < n; ++i) {
    uint64_t b[NB];
    for (size_t j = 0; j < NB; ++j) b[j] = blocks[j * stride + i];
    const SipKey& k = keys[key_ids != nullptr ? (key_ids[i] & 1) : 0];
    out[i] = internal::SipHashBlocks<C, D>(k, b);
  }
}

#if MOAT_SIP_AVX2

using lanes::KeyInit;
using lanes::Lanes;

// Lanes for messages i..i+3: key 1 where key_ids[i + l] & 1, else key 0.
MOAT_AVX2_INLINE Lanes InitFromIds(const KeyInit& ki, const uint8_t* ids) {
  if (ids == nullptr) return Lanes{ki.v[0][0], ki.v[0][1], ki.v[0][2], ki.v[0][3]};
  uint32_t four;
  std::memcpy(&four, ids, 4);
  // Each id's low bit, widened to a 64-bit lane, then all ones where set.
  const __m256i bit = _mm256_cvtepu8_epi64(_mm_cvtsi32_si128(static_cast<int>(four & 0x01010101)));
  return lanes::InitLanes(ki, _mm256_cmpeq_epi64(bit, _mm256_set1_epi64x(1)));
}

// Eight messages i..i+7 as two register sets whose instructions
// interleave: a SipRound is a chain of dependent operations, and the other
// set's fill its latency.
template <int C, int D, size_t NB>
MOAT_AVX2_INLINE void Hash8(const KeyInit& ki, const uint8_t* ids, const uint64_t* blocks,
                            size_t stride, uint64_t* out) {
  Lanes a = InitFromIds(ki, ids);
  Lanes b = InitFromIds(ki, ids != nullptr ? ids + 4 : nullptr);
  for (size_t j = 0; j < NB; ++j) {
    lanes::Compress<C>(a, lanes::Load4(blocks + j * stride));
    lanes::Compress<C>(b, lanes::Load4(blocks + j * stride + 4));
  }
  lanes::StartFinish(a);
  lanes::StartFinish(b);
  for (int r = 0; r < D; ++r) {
    lanes::Round(a);
    lanes::Round(b);
  }
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), lanes::Digest(a));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + 4), lanes::Digest(b));
}

template <int C, int D, size_t NB>
MOAT_AVX2_INLINE void Hash4(const KeyInit& ki, const uint8_t* ids, const uint64_t* blocks,
                            size_t stride, uint64_t* out) {
  Lanes a = InitFromIds(ki, ids);
  for (size_t j = 0; j < NB; ++j) lanes::Compress<C>(a, lanes::Load4(blocks + j * stride));
  lanes::StartFinish(a);
  for (int r = 0; r < D; ++r) lanes::Round(a);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), lanes::Digest(a));
}

template <int C, int D, size_t NB>
MOAT_AVX2 void Avx2Batch(const SipKey keys[2], const uint8_t* key_ids, const uint64_t* blocks,
                         size_t stride, size_t n, uint64_t* out) {
  const KeyInit ki = lanes::MakeKeyInit(keys);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    Hash8<C, D, NB>(ki, key_ids != nullptr ? key_ids + i : nullptr, blocks + i, stride, out + i);
  }
  if (i + 4 <= n) {
    Hash4<C, D, NB>(ki, key_ids != nullptr ? key_ids + i : nullptr, blocks + i, stride, out + i);
    i += 4;
  }
  if (i == n) return;
  // 1..3 left: copy them into zero-padded lanes so no load reads past the
  // caller's columns, and keep only their results.
  const size_t left = n - i;
  alignas(32) uint64_t pad_blocks[NB * 4] = {};
  uint8_t pad_ids[4] = {};
  alignas(32) uint64_t pad_out[4];
  for (size_t j = 0; j < NB; ++j) {
    for (size_t l = 0; l < left; ++l) pad_blocks[j * 4 + l] = blocks[j * stride + i + l];
  }
  if (key_ids != nullptr) {
    for (size_t l = 0; l < left; ++l) pad_ids[l] = key_ids[i + l];
  }
  Hash4<C, D, NB>(ki, key_ids != nullptr ? pad_ids : nullptr, pad_blocks, 4, pad_out);
  for (size_t l = 0; l < left; ++l) out[i + l] = pad_out[l];
}

#endif  // MOAT_SIP_AVX2

using BatchFn = void (*)(const SipKey[2], const uint8_t*, const uint64_t*, size_t, size_t,
                         uint64_t*);

template <int C, int D, size_t NB>
constexpr BatchFn Pick(SipBatchPath path) {
#if MOAT_SIP_AVX2
  if (path == SipBatchPath::kAvx2) return &Avx2Batch<C, D, NB>;
#endif
  (void)path;
  return &ScalarBatch<C, D, NB>;
}

template <int C, int D>
void Batch(const SipKey keys[2], const uint8_t* key_ids, const uint64_t* blocks, size_t num_blocks,
           size_t stride, size_t n, uint64_t* out) {
  const SipBatchPath path = Path();
  BatchFn fn = nullptr;
  switch (num_blocks) {
    case 1:
      fn = Pick<C, D, 1>(path);
      break;
    case 2:
      fn = Pick<C, D, 2>(path);
      break;
    case 3:
      fn = Pick<C, D, 3>(path);
      break;
    case 4:
      fn = Pick<C, D, 4>(path);
      break;
    case 5:
      fn = Pick<C, D, 5>(path);
      break;
    case 6:
      fn = Pick<C, D, 6>(path);
      break;
    case 7:
      fn = Pick<C, D, 7>(path);
      break;
    case 8:
      fn = Pick<C, D, 8>(path);
      break;
    default:
      return;
  }
  fn(keys, key_ids, blocks, stride, n, out);
}

}  // namespace

const char* SipBatchPathName(SipBatchPath path) {
  switch (path) {
    case SipBatchPath::kScalar:
      return "scalar";
    case SipBatchPath::kAvx2:
      return "avx2";
  }
  return "unknown";
}

bool SipBatchPathSupported(SipBatchPath path) {
  switch (path) {
    case SipBatchPath::kScalar:
      return true;
    case SipBatchPath::kAvx2:
      return CpuHasAvx2();
  }
  return false;
}

SipBatchPath ActiveSipBatchPath() { return Path(); }

bool SetSipBatchPath(SipBatchPath path) {
  if (!SipBatchPathSupported(path)) return false;
  g_path.store(static_cast<uint8_t>(path), std::memory_order_relaxed);
  return true;
}

void SipHash13Batch(const SipKey keys[2], const uint8_t* key_ids, const uint64_t* blocks,
                    size_t num_blocks, size_t stride, size_t n, uint64_t* out) {
  Batch<1, 3>(keys, key_ids, blocks, num_blocks, stride, n, out);
}

void SipHash24Batch(const SipKey keys[2], const uint8_t* key_ids, const uint64_t* blocks,
                    size_t num_blocks, size_t stride, size_t n, uint64_t* out) {
  Batch<2, 4>(keys, key_ids, blocks, num_blocks, stride, n, out);
}

}  // namespace moat::cookie
