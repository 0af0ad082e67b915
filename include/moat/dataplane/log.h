#pragma once
// moat's log types (`moat.main`, `moat.port`, `moat.worker`), registered
// with EAL so `--log-level=moat.*:debug` works. Control plane only: nothing
// on the per-packet path logs.

#include <rte_log.h>

namespace moat::dataplane {
extern int log_type_main;
extern int log_type_worker;
}  // namespace moat::dataplane

#define MOAT_LOG(level, fmt, ...)                                            \
  rte_log(RTE_LOG_##level, ::moat::dataplane::log_type_main, "moat: " fmt "\n" \
          __VA_OPT__(, ) __VA_ARGS__)
#define MOAT_WORKER_LOG(level, fmt, ...)                                       \
  rte_log(RTE_LOG_##level, ::moat::dataplane::log_type_worker,                 \
          "moat.worker: " fmt "\n" __VA_OPT__(, ) __VA_ARGS__)
