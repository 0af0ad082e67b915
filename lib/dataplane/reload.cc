#include "moat/dataplane/reload.h"

#include "moat/proxy/engine.h"

namespace moat::dataplane {

ConfigChannel::ConfigChannel(size_t workers, const proxy::EngineConfig& initial)
    : acks_(new Ack[workers > 0 ? workers : 1]), workers_(workers) {
  retained_.push_back(std::make_unique<Generation>(Generation{1, initial}));
  current_.store(retained_.back().get(), std::memory_order_release);
}

ConfigChannel::~ConfigChannel() = default;

uint64_t ConfigChannel::Publish(const proxy::EngineConfig& next) {
  const uint64_t gen = current_.load(std::memory_order_relaxed)->generation + 1;
  retained_.push_back(std::make_unique<Generation>(Generation{gen, next}));
  // Release: a worker that loads this pointer sees the whole object.
  current_.store(retained_.back().get(), std::memory_order_release);
  generation_.store(gen, std::memory_order_release);
  Reclaim();
  return gen;
}

uint64_t ConfigChannel::applied() const {
  uint64_t min = generation_.load(std::memory_order_acquire);
  for (size_t i = 0; i < workers_; ++i) {
    const uint64_t a = acks_[i].acked.load(std::memory_order_acquire);
    if (a < min) min = a;
  }
  return min;
}

void ConfigChannel::Reclaim() {
  // A worker that acked generation m loads only objects of generation >= m
  // from then on (the pointer only moves forward), so everything older
  // than the smallest ack is unreachable. The current object never is.
  const uint64_t min = applied();
  size_t drop = 0;
  while (drop + 1 < retained_.size() && retained_[drop]->generation < min) ++drop;
  retained_.erase(retained_.begin(), retained_.begin() + static_cast<ptrdiff_t>(drop));
}

void ConfigChannel::Apply(size_t worker, const Generation* g, proxy::Engine* engine) {
  engine->Reconfigure(g->config);
  Ack& a = acks_[worker];
  a.running = g->generation;
  // Release: the engine is done reading *g before the control thread can
  // see this ack and free it.
  a.acked.store(g->generation, std::memory_order_release);
}

}  // namespace moat::dataplane
