#include "moat/dataplane/log.h"

namespace moat::dataplane {

// Registered in a constructor, before rte_eal_init() parses --log-level.
RTE_LOG_REGISTER(log_type_main, moat.main, INFO);
RTE_LOG_REGISTER(log_type_worker, moat.worker, INFO);

}  // namespace moat::dataplane
