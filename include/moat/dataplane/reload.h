#pragma once
// Configuration generations: how a reload reaches the workers without a
// lock on the hot path.
//
// The control thread builds a new immutable proxy::EngineConfig and
// Publish()es it: one pointer store with release semantics. Each worker
// calls PickUp() once per poll round, between bursts: one acquire load of
// that pointer and a compare of the generation number in it with the one
// the worker runs. When they differ the worker hands the new config to its
// engine (Engine::Reconfigure copies the policy, no allocation) and then
// acknowledges the generation in its own cache line. Every worker switches
// between two of its bursts, so each burst runs under exactly one policy.
//
// Reclamation is by per-worker acknowledgement: a worker loads the pointer
// afresh each round and is done with what it loaded before it acks, so
// once every worker has acked a generation newer than k, none can still be
// reading k's object, and the control thread frees it (Reclaim(), at the
// next publish or poll of the control thread). Nothing on a worker waits
// for anything.
//
// Also here: the process-level reload counters (reload_ok, reload_failed),
// which the telemetry commands and the metrics endpoint report.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "moat/proxy/config.h"

namespace moat::proxy {
class Engine;
}

namespace moat::dataplane {

class ConfigChannel {
 public:
  // `initial` is what the engines were created with: generation 1, which
  // every worker already runs.
  ConfigChannel(size_t workers, const proxy::EngineConfig& initial);
  ~ConfigChannel();
  ConfigChannel(const ConfigChannel&) = delete;
  ConfigChannel& operator=(const ConfigChannel&) = delete;

  // --- Control thread (one at a time). ---
  // Makes `next` the current generation; returns its number.
  uint64_t Publish(const proxy::EngineConfig& next);
  // Frees the objects no worker can be reading any more.
  void Reclaim();
  // The generation every worker has switched to (the minimum of the acks;
  // any thread).
  uint64_t applied() const;
  // The newest generation published (any thread).
  uint64_t generation() const { return generation_.load(std::memory_order_acquire); }
  // The config of the current generation (the publishing thread only: the
  // object may be freed by the next Publish).
  const proxy::EngineConfig& current() const { return current_.load()->config; }
  size_t retained() const { return retained_.size(); }

  void CountReload(bool ok) {
    (ok ? reload_ok_ : reload_failed_).fetch_add(1, std::memory_order_relaxed);
  }
  uint64_t reload_ok() const { return reload_ok_.load(std::memory_order_relaxed); }
  uint64_t reload_failed() const { return reload_failed_.load(std::memory_order_relaxed); }

  // --- Worker `worker`, once per poll round. ---
  // Switches `engine` to the current generation if it runs an older one.
  void PickUp(size_t worker, proxy::Engine* engine) {
    const Generation* g = current_.load(std::memory_order_acquire);
    Ack& a = acks_[worker];
    if (g->generation == a.running) return;
    Apply(worker, g, engine);
  }

 private:
  struct Generation {
    uint64_t generation;
    proxy::EngineConfig config;
  };
  // One cache line per worker: `running` is the worker's own copy (plain),
  // `acked` what the control thread reads.
  struct alignas(64) Ack {
    uint64_t running = 1;
    std::atomic<uint64_t> acked{1};
  };

  void Apply(size_t worker, const Generation* g, proxy::Engine* engine);

  std::atomic<const Generation*> current_;
  // current_'s number, readable without touching the object (telemetry and
  // metrics threads must not dereference a pointer the reload may free).
  std::atomic<uint64_t> generation_{1};
  std::unique_ptr<Ack[]> acks_;
  size_t workers_;
  // Every object published and not yet freed, oldest first (control only).
  std::vector<std::unique_ptr<Generation>> retained_;
  std::atomic<uint64_t> reload_ok_{0};
  std::atomic<uint64_t> reload_failed_{0};
};

}  // namespace moat::dataplane
