// /moat/backends reads each worker's backend table through BackendView
// (include/moat/dataplane/backend_view.h): the worker copies it between
// bursts when asked, so the reader never races the worker's writes.

#include "moat/dataplane/backend_view.h"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace moat::dataplane {
namespace {

using proxy::BackendInfo;
using proxy::BackendTable;

TEST(BackendViewTest, NoCopyWithoutAWorker) {
  BackendView view;
  std::vector<BackendInfo> out;
  uint64_t now = 0;
  EXPECT_FALSE(view.Copy(std::chrono::milliseconds(5), &out, &now));
}

TEST(BackendViewTest, ServeDoesNothingUnlessAsked) {
  BackendView view;
  BackendTable table;
  const uint8_t addr[4] = {198, 18, 1, 2};
  table.Learn(4, addr, 80, BackendInfo::kTs, 0, 1360, 7);
  view.Serve(table, 9);  // nobody asked: the next Copy must still wait
  std::vector<BackendInfo> out;
  uint64_t now = 0;
  EXPECT_FALSE(view.Copy(std::chrono::milliseconds(5), &out, &now));
}

// A worker thread that keeps relearning its table between "bursts" while a
// reader copies it many times: every copy is one whole table state (each
// record's mss and learned_ns agree, as the worker always writes them
// together), never a torn one.
TEST(BackendViewTest, CopiesAreWholeWhileTheWorkerWrites) {
  BackendView view;
  std::atomic<bool> stop{false};
  std::thread worker([&] {
    BackendTable table;
    uint64_t tick = 1;
    while (!stop.load(std::memory_order_relaxed)) {
      for (uint8_t i = 0; i < 8; ++i) {
        const uint8_t addr[4] = {198, 18, 1, i};
        table.Learn(4, addr, 80, BackendInfo::kTs | BackendInfo::kSack, BackendInfo::kSack,
                    static_cast<uint16_t>(1000 + tick % 400), tick);
      }
      view.Serve(table, tick);
      ++tick;
    }
  });
  for (int i = 0; i < 200; ++i) {
    std::vector<BackendInfo> out;
    uint64_t now = 0;
    ASSERT_TRUE(view.Copy(std::chrono::seconds(5), &out, &now));
    ASSERT_EQ(out.size(), 8u);
    for (const BackendInfo& b : out) {
      EXPECT_EQ(b.learned_ns, now);
      EXPECT_EQ(b.mss, 1000 + now % 400);
      EXPECT_FALSE(b.Allows(BackendInfo::kTs));
      EXPECT_TRUE(b.Allows(BackendInfo::kSack));
    }
  }
  stop = true;
  worker.join();
}

}  // namespace
}  // namespace moat::dataplane
