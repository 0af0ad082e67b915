#include "moat/flow/flow_key.h"

namespace moat::flow {
namespace {

inline uint64_t Mix(uint64_t a, uint64_t b) {
  // 64x64->128 multiply and fold (the wyhash/mum primitive): every input
  // bit reaches every output bit in one step.
  const __uint128_t r = static_cast<__uint128_t>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}

constexpr uint64_t kP0 = 0xa0761d6478bd642full;
constexpr uint64_t kP1 = 0xe7037ed1a0b428dbull;
constexpr uint64_t kP2 = 0x8ebc6af09c88c6e3ull;

}  // namespace

uint64_t HashFlowKey(const FlowKey& key, uint64_t seed) {
  uint64_t w[5];
  std::memcpy(w, &key, sizeof(w));
  uint64_t h = Mix(w[0] ^ seed ^ kP0, w[1] ^ kP1);
  h = Mix(h ^ w[2] ^ kP2, w[3] ^ seed);
  h = Mix(h ^ w[4] ^ kP1, seed ^ kP2);
  return h;
}

}  // namespace moat::flow
