#include "moat/proxy/stats.h"

#include <string_view>

namespace moat::proxy {

const char* const kCounterNames[kNumCounters] = {
#define MOAT_COUNTER_NAME(name, help) #name,
    MOAT_COUNTERS(MOAT_COUNTER_NAME)
#undef MOAT_COUNTER_NAME
};

const char* const kCounterHelp[kNumCounters] = {
#define MOAT_COUNTER_HELP(name, help) help,
    MOAT_COUNTERS(MOAT_COUNTER_HELP)
#undef MOAT_COUNTER_HELP
};

bool IsGauge(Counter c) {
  return std::string_view(kCounterHelp[static_cast<size_t>(c)]).starts_with("gauge:");
}

}  // namespace moat::proxy
