#include "moat/flow/flow_key.h"

#include <sys/random.h>

#include <cerrno>
#include <cstddef>

namespace moat::flow {
uint64_t HashFlowKey(const FlowKey& key, uint64_t seed) {
  uint64_t w[5];
  std::memcpy(w, &key, sizeof(w));
  return HashFlowWords(w[0], w[1], w[2], w[3], w[4], seed);
}

uint64_t RandomHashSeed() {
  uint64_t seed = 0;
  uint8_t* p = reinterpret_cast<uint8_t*>(&seed);
  size_t got = 0;
  while (got < sizeof(seed)) {
    const ssize_t n = getrandom(p + got, sizeof(seed) - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      break;  // getrandom cannot fail otherwise on Linux >= 3.17
    }
    got += static_cast<size_t>(n);
  }
  return seed;
}

}  // namespace moat::flow
