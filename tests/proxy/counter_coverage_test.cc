// Every counter in MOAT_COUNTERS (include/moat/proxy/stats.h) must be named
// by some test in this directory as k_<name>: a counter added without a
// test that asserts it fails here. The names come from the X-macro itself
// (kCounterNames), the test sources from tests/proxy/ as built, this file
// left out (its own examples name counters).

#include <cctype>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <vector>

#include "gtest/gtest.h"
#include "moat/proxy/stats.h"

namespace moat::proxy {
namespace {

bool IsIdentChar(char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '_'; }

// Whether `text` contains k_<name> as a whole identifier (not as the start
// of a longer one, or the end of one).
bool NamesCounter(std::string_view text, std::string_view name) {
  const std::string needle = "k_" + std::string(name);
  for (size_t at = text.find(needle); at != std::string_view::npos;
       at = text.find(needle, at + 1)) {
    const size_t end = at + needle.size();
    const bool starts = at == 0 || !IsIdentChar(text[at - 1]);
    const bool ends = end == text.size() || !IsIdentChar(text[end]);
    if (starts && ends) return true;
  }
  return false;
}

TEST(CounterCoverageTest, MatchesWholeIdentifiersOnly) {
  EXPECT_TRUE(NamesCounter("h.Count(Counter::k_bridged), 1u", "bridged"));
  EXPECT_TRUE(NamesCounter("k_bridged", "bridged"));
  EXPECT_FALSE(NamesCounter("Counter::k_bridged_more", "bridged"));
  EXPECT_FALSE(NamesCounter("Counter::xk_bridged", "bridged"));
  EXPECT_FALSE(NamesCounter("bridged", "bridged"));
}

TEST(CounterCoverageTest, EveryCounterIsNamedByAnEngineTest) {
  const std::filesystem::path dir = MOAT_PROXY_TEST_DIR;
  const std::filesystem::path self = std::filesystem::path(__FILE__).filename();
  std::string sources;
  size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    const std::string ext = entry.path().extension().string();
    if (!entry.is_regular_file() || (ext != ".cc" && ext != ".h")) continue;
    if (entry.path().filename() == self) continue;
    std::ifstream in(entry.path());
    sources.append(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    sources += '\n';
    ++files;
  }
  ASSERT_GE(files, 3u) << "test sources not found in " << dir;
  std::string missing;
  for (size_t i = 0; i < kNumCounters; ++i) {
    if (!NamesCounter(sources, kCounterNames[i])) missing += std::string(" k_") + kCounterNames[i];
  }
  EXPECT_TRUE(missing.empty()) << "counters that no test in " << dir.string()
                               << " names; add a test that asserts each:" << missing;
}

}  // namespace
}  // namespace moat::proxy
