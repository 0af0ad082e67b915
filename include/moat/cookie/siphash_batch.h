#pragma once
// SipHash over many short messages at once: the same function as siphash.h,
// computed for several messages side by side.
//
// SipHash-1-3 of a 23-byte cookie message is a dependency chain of ~70
// 64-bit adds, xors and rotates: one at a time, a core waits on it (~35
// cycles). A burst of SYNs gives up to 32 independent messages. With AVX2,
// one 256-bit register holds the same state word (v0, v1, v2 or v3) of four
// messages, so every instruction of the SipRound advances four hashes; two
// such register sets (eight messages) are interleaved so that one set's
// rounds fill the other's latency. The lanes never mix: each lane computes
// exactly SipHash-c-d of its own message under its own key, so the output
// is bit-identical to siphash.h's on any CPU, which is what lets a fleet of
// mixed machines share --cookie_secret_file. The scalar path runs the
// one-message template of siphash.h per item.
//
// Messages are given in SipHash's block form (internal::SipHashBlocks: the
// full little-endian words, then the final block with the length in its top
// byte), column-wise: block j of message i is blocks[j * stride + i], so
// four consecutive messages' block j is one 256-bit load.

#include <cstddef>
#include <cstdint>

#include "moat/cookie/siphash.h"

namespace moat::cookie {

// Which implementation the batch functions run. The default is the fastest
// one this CPU supports, chosen once at start-up from cpuid (Intel or AMD).
enum class SipBatchPath : uint8_t {
  kScalar = 0,  // one message at a time; every x86-64 (and any other) CPU
  kAvx2 = 1,    // 4 lanes x 2 interleaved register sets; needs AVX2 (and the
                // OS saving YMM state), checked at run time
};

// "scalar" or "avx2", for the start-up log.
const char* SipBatchPathName(SipBatchPath path);
// kScalar always; kAvx2 when built for x86-64 and the CPU and OS support it.
bool SipBatchPathSupported(SipBatchPath path);
// The path the batch functions use now.
SipBatchPath ActiveSipBatchPath();
// Makes every thread's batch functions use `path` from now on; returns
// false and changes nothing when it is not supported here. For tests and
// benchmarks (forcing the scalar path) and for an operator's override; call
// it before the workers start, not while they hash. Every path computes the
// same function, so switching changes speed only.
bool SetSipBatchPath(SipBatchPath path);

// Messages of 1..kSipBatchMaxBlocks blocks (0..63 bytes), the cookie's are
// 3 (IPv4) and 6 (IPv6).
inline constexpr size_t kSipBatchMaxBlocks = 8;

// For every i < n: out[i] = SipHash-c-d, under keys[key_ids[i] & 1] (or
// keys[0] for all when key_ids is null), of the message of num_blocks
// blocks whose block j is blocks[j * stride + i]. stride >= n; num_blocks
// in 1..kSipBatchMaxBlocks (anything else writes nothing). Any n, including
// 0 and counts that are not a multiple of the lane count (the last partial
// group runs in zero-padded lanes whose results are dropped). No
// allocation; reads only blocks[j * stride + i] for i < n.
void SipHash13Batch(const SipKey keys[2], const uint8_t* key_ids, const uint64_t* blocks,
                    size_t num_blocks, size_t stride, size_t n, uint64_t* out);
// The same for SipHash-2-4 (the paper's variant): the published reference
// vectors pin the batch kernels' rounds and finalization through it.
void SipHash24Batch(const SipKey keys[2], const uint8_t* key_ids, const uint64_t* blocks,
                    size_t num_blocks, size_t stride, size_t n, uint64_t* out);

}  // namespace moat::cookie
