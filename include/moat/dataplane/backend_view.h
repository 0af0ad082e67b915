#pragma once
// A race-free copy of one worker's backend table (proxy::BackendTable,
// what moat learned from each backend's SYN-ACKs) for telemetry
// (/moat/backends). The table is the worker's alone and is written while
// it processes packets, so no other thread may read it. Instead the reader
// asks, and the worker copies the table here at its next timer tick, when
// it is between bursts; the reader waits for that copy.
//
// Ordering: the worker copies only while `requested_` is set, clears it,
// then bumps `served_` (release). A reader holds `mu_`, notes `served_`,
// sets `requested_` and reads once `served_` moved (acquire): from then
// until it sets `requested_` again the worker does not write. A reader that
// gave up (the worker is stopped or stuck) leaves the request set; a late
// copy then lands while nobody reads, and the next reader still waits for
// a fresh bump. Costs the worker one relaxed load per tick when nobody asks.
// No DPDK: tests drive it with a thread.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

#include "moat/proxy/backend_table.h"

namespace moat::dataplane {

class BackendView {
 public:
  // Worker side, between bursts: copies `table` if a reader asked.
  void Serve(const proxy::BackendTable& table, uint64_t now_ns) {
    if (!requested_.load(std::memory_order_acquire)) [[likely]]
      return;
    uint32_t n = 0;
    const proxy::BackendInfo* slots = table.slots();
    for (uint32_t i = 0; i < proxy::BackendTable::capacity(); ++i) {
      if (slots[i].addr_len != 0) copy_[n++] = slots[i];
    }
    n_ = n;
    now_ns_ = now_ns;
    requested_.store(false, std::memory_order_relaxed);
    served_.fetch_add(1, std::memory_order_release);
  }

  // Control side: the worker's records as of its next tick, and its
  // monotonic time then (for the records' ages). False when the worker did
  // not answer within `timeout`.
  bool Copy(std::chrono::milliseconds timeout, std::vector<proxy::BackendInfo>* out,
            uint64_t* now_ns) {
    std::lock_guard<std::mutex> lock(mu_);
    const uint64_t before = served_.load(std::memory_order_acquire);
    requested_.store(true, std::memory_order_release);
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (served_.load(std::memory_order_acquire) == before) {
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    out->assign(copy_, copy_ + n_);
    *now_ns = now_ns_;
    return true;
  }

 private:
  std::atomic<bool> requested_{false};
  std::atomic<uint64_t> served_{0};
  std::mutex mu_;  // one reader at a time
  uint32_t n_ = 0;
  uint64_t now_ns_ = 0;
  proxy::BackendInfo copy_[proxy::BackendTable::capacity()] = {};
};

}  // namespace moat::dataplane
