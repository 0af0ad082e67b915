#pragma once
// Counts calls of the global operator new, for the zero-allocation tests
// (tests/flow/flow_alloc_test.cc, tests/proxy/engine_alloc_test.cc).
//
// Linking the moat_alloc_counter library (whole, so the replacements are
// always taken) replaces every form of the global operator new and delete
// for the binary. A call is counted only while an AllocationScope is open on
// the calling thread, so a test counts exactly the calls it brackets (an
// engine call, say) and builds its frames or parses results freely outside.
//
//   const size_t before = moat::testing::CountedAllocations();
//   {
//     moat::testing::AllocationScope counting;
//     engine->Process(...);
//   }
//   EXPECT_EQ(moat::testing::CountedAllocations() - before, 0u);

#include <cstddef>

namespace moat::testing {

// Calls counted so far, over every scope of every thread.
size_t CountedAllocations();

// Counts this thread's calls while alive; scopes may nest.
class AllocationScope {
 public:
  AllocationScope();
  ~AllocationScope();
  AllocationScope(const AllocationScope&) = delete;
  AllocationScope& operator=(const AllocationScope&) = delete;

  // Calls counted since this scope opened.
  size_t count() const { return CountedAllocations() - start_; }

 private:
  size_t start_;
};

}  // namespace moat::testing
