#pragma once
// Per-worker counters. One X-macro list generates the enum, the names that
// the stats table and the /moat/stats telemetry command print, and the
// storage. Every way a packet can be dropped has its own `drop_*` counter:
// an operator must be able to tell a flood of bad cookies from a flood of
// truncated headers without a packet capture.

#include <cstddef>
#include <cstdint>

#include "moat/net/packet.h"

namespace moat::proxy {

// X(name, help). Gauges are marked in their help text; everything else only
// ever increases.
#define MOAT_COUNTERS(X)                                                       \
  /* Handshake, client side */                                                 \
  X(syn_received, "client SYNs for a protected service")                       \
  X(synack_sent, "cookie SYN-ACKs sent to clients")                            \
  X(syn_payload_ignored, "SYNs whose payload was not forwarded (incl. TFO)")   \
  X(cookie_valid, "client ACKs that carried a valid cookie")                   \
  X(cookie_invalid, "client ACKs with an invalid or expired cookie (dropped)") \
  /* Handshake, backend side */                                                \
  X(backend_syn_sent, "SYNs sent to backends")                                 \
  X(backend_syn_retransmit, "backend SYN retransmissions")                     \
  X(backend_synack, "backend SYN-ACKs that established a flow")                \
  X(backend_refused, "backends that answered the SYN with RST")                \
  X(backend_timeout, "backends that never answered the SYN")                   \
  X(client_rst_sent, "RSTs moat sent to clients")                              \
  X(held_segments, "client segments kept while the backend handshake ran")     \
  X(handshake_acks_absorbed, "duplicate handshake ACKs absorbed while the "    \
                             "backend handshake ran")                          \
  X(backend_synack_dup, "backend SYN-ACK retransmissions answered")            \
  X(backend_ts_mismatch, "backends that did not answer timestamps the client " \
                         "uses")                                               \
  X(backend_mss_smaller, "backends whose MSS is below the advertised --mss")   \
  X(syn_on_established, "client SYNs on a live flow, passed on (RFC 5961 4)")  \
  /* Flows */                                                                  \
  X(flows_created, "flows created (cookie-validated)")                         \
  X(flows_passthrough, "backend-opened flows tracked and passed through")      \
  X(passthrough_untracked, "backend SYNs passed untracked: flow table full")   \
  X(passthrough_forwarded, "segments of backend-opened flows passed through")  \
  X(flows_closed, "flows removed (FIN, RST, timeout)")                         \
  X(flows_active, "gauge: flows in the table")                                 \
  X(flows_expired, "flows removed by idle expiry")                             \
  /* Forwarding */                                                             \
  X(fwd_client_to_server, "client->server segments translated")               \
  X(fwd_server_to_client, "server->client segments translated")               \
  X(bridged, "non-protected frames bridged unchanged")                         \
  X(icmp_translated, "ICMP errors about spliced segments, quoted seq "         \
                     "shifted into the backend's space (PMTU discovery)")     \
  /* Drops: one reason each */                                                 \
  X(drop_parse, "malformed frames (see parse_* for the reason)")               \
  X(drop_fragment, "fragments of protected traffic")                           \
  X(drop_ext_header, "protected-address IP with AH or an unknown IPv6 "        \
                     "extension header (could hide TCP)")                     \
  X(drop_bad_checksum, "protected TCP with a bad checksum")                    \
  X(drop_flow_table_full, "valid cookies refused: flow table full (RST sent)") \
  X(drop_no_flow_client, "client non-SYN/non-ACK with no flow")                \
  X(drop_no_flow_server, "backend TCP from a protected port with no flow")     \
  X(drop_held_overflow, "client segments while the backend handshake ran, "    \
                        "beyond the per-flow or pool bound")                   \
  X(drop_bad_backend_synack, "backend SYN-ACK not acking the client ISN")      \
  X(drop_rst_out_of_window, "RSTs outside the receive window (RFC 5961)")     \
  X(drop_unexpected, "segments that fit no state of their flow")            \
  /* Added by the engine (append-only) */                                      \
  X(drop_bad_flags, "protected TCP with SYN+FIN, SYN+RST, or no ACK on a "     \
                    "synchronized flow (RFC 9293 3.10.7.4)")                   \
  X(drop_no_room, "SYN-ACK not sent: frame and Output both too small")         \
  X(output_overflow, "generated frames lost: Output full (dataplane bug)")     \
  X(server_rst_sent, "RSTs moat sent to backends")                             \
  X(backend_stale_reset, "backend ACKs for a stale connection answered with " \
                         "RST during the backend handshake (RFC 9293 3.10.7.3)")\
  X(held_released, "kept client segments sent on after the backend SYN-ACK")   \
  X(rst_teardown, "flows closed by an exact-match RST (RFC 5961 3.2)")         \
  X(rst_in_window, "in-window RSTs passed on; flow kept until confirmed")      \
  X(flows_time_wait, "flows closed both ways, lingering in TIME_WAIT")         \
  X(time_wait_reuse, "client SYNs that replaced a flow in TIME_WAIT")          \
  X(idle_rst_sent, "idle-expired flows reset towards both ends")              \
  /* SYN cache (syn_cache.h) */                                                \
  X(syn_cache_inserted, "SYNs whose exact options the SYN cache keeps")       \
  X(syn_cache_hit, "cookie ACKs matched to a SYN-cache entry: exact options") \
  X(syn_cache_miss, "cookie ACKs with no SYN-cache entry: the cookie's "      \
                    "options (cookie-only mode, evicted or expired)")          \
  X(syn_cache_evicted, "SYN-cache entries evicted oldest-first from a full "  \
                       "bucket")                                               \
  X(syn_cache_expired, "SYN-cache entries whose third ACK never came")        \
  X(syn_cache_dup_syn, "retransmitted SYNs answered from their SYN-cache "    \
                       "entry")                                                \
  X(synack_retransmit, "SYN-ACKs retransmitted from the SYN cache")           \
  X(syn_cookie_only, "SYNs answered by a worker in cookie-only mode")         \
  X(syn_cache_to_cookie, "switches to cookie-only mode (SYN rate or cache "   \
                         "occupancy high)")                                    \
  X(syn_cache_to_cache, "switches back from cookie-only mode (calm again)")   \
  X(syn_cache_entries, "gauge: SYN-cache entries in use")                     \
  X(syn_cache_cookie_mode, "gauge: workers in cookie-only mode")             \
  /* TCP Fast Open (RFC 7413, --fastopen) */                                   \
  X(fastopen_cookie_sent, "SYN-ACKs carrying a Fast Open cookie")             \
  X(fastopen_accepted, "Fast Open SYNs with a valid cookie and data: data "   \
                       "acked in the SYN-ACK, backend opened at once")         \
  X(fastopen_invalid, "Fast Open SYNs with an invalid, expired or another "   \
                      "address's cookie (data not acked)")                     \
  X(fastopen_refused, "valid Fast Open SYNs with data answered normally: "    \
                      "--fastopen_max_pending reached or paused, table or "   \
                      "held pool full")                                        \
  X(fastopen_empty, "Fast Open SYNs with a valid cookie and no data")         \
  X(fastopen_syn_again, "retransmitted Fast Open SYNs answered again")        \
  X(fastopen_pending, "gauge: Fast Open flows waiting for their backend")     \
  X(held_duplicate, "client retransmissions of a segment already held while "  \
                    "the backend handshake ran (absorbed)")                    \
  X(backend_ecn_refused, "backends that refused ECN the client negotiated with " \
                         "moat (its segments then claim none)")                \
  X(ecn_cleared, "client segments whose ECT or ECE/CWR moat cleared towards "  \
                 "a backend without ECN (RFC 3168 6.1.1)")                     \
  X(drop_ecn_ce, "client segments marked CE towards a backend without ECN: "   \
                 "dropped so the mark becomes a loss (RFC 6040 4.2)")          \
  X(ts_echo_mismatch, "cookie ACKs whose TSecr disagreed with the cookie: "    \
                      "options taken from the ISN alone")                      \
  X(rst_probe_sent, "keep-alive probes to the receiver of an unconfirmed "     \
                    "in-window RST (RFC 5961 3)")                              \
  X(rst_probe_answered, "in-window RSTs withdrawn: the probed end answered "   \
                        "with an ACK, the flow stays")                         \
  X(rst_probe_unanswered, "flows removed after unanswered RST probes (both ends " \
                          "reset)")                                            \
  X(bridged_unparsed, "frames moat could not parse, for no protected service: " \
                      "bridged unchanged")   \
  /* Operations: anti-reflection and reload */                                 \
  X(drop_synack_rate, "client SYNs over --synack_rate for their source "       \
                      "prefix (not answered)")                                 \
  X(drop_denied, "client SYNs from a --deny prefix (not answered)")            \
  X(config_reloads, "new configurations (reloads) this worker applied")        \
  X(services_retired, "gauge: services removed by a reload whose flows are "  \
                      "still looked up")                                       \
  /* Backends that differ from the flags (backend_table.h) */                  \
  X(backend_learned, "backend SYN-ACKs that taught moat something new about "  \
                     "their backend (new, or a changed answer)")               \
  X(synack_narrowed, "SYN-ACKs offering less than the flags because the "      \
                     "backend refused it (timestamps, SACK, ECN, MSS)")        \
  X(synack_retransmit_limited, "SYN-cache SYN-ACK retransmissions not sent: "  \
                               "their source prefix was denied or over "       \
                               "--synack_rate")        \
  X(drop_held_oversize, "client segments while the backend handshake ran, "    \
                        "longer than a held slot (--mtu): not held, the "      \
                        "client retransmits")                                  \
  /* Repairing flows whose backend refused what the client negotiated */       \
  X(sack_stripped, "client segments whose SACK option moat overwrote with "    \
                   "NOPs: their backend did not permit SACK (RFC 2018 2)")     \
  X(ts_inserted, "backend segments moat gave a timestamp option: the client "  \
                 "negotiated timestamps, the backend did not (RFC 7323 3.2)")  \
  X(ts_insert_no_room, "backend segments that needed a timestamp but had no "  \
                       "room in the TCP header (40 option bytes): forwarded "  \
                       "without")                                              \
  X(ts_insert_oversize, "backend segments that needed a timestamp but would "  \
                        "then exceed --mtu, the client's MSS or the buffer: "  \
                        "forwarded without")

enum class Counter : uint16_t {
#define MOAT_COUNTER_ENUM(name, help) k_##name,
  MOAT_COUNTERS(MOAT_COUNTER_ENUM)
#undef MOAT_COUNTER_ENUM
};

inline constexpr size_t kNumCounters = 0
#define MOAT_COUNTER_COUNT(name, help) +1
    MOAT_COUNTERS(MOAT_COUNTER_COUNT)
#undef MOAT_COUNTER_COUNT
    ;

extern const char* const kCounterNames[kNumCounters];
extern const char* const kCounterHelp[kNumCounters];

// True for counters that are levels rather than running totals.
bool IsGauge(Counter c);

// Written only by the worker that owns it (plain stores are fine there);
// other threads (stats printer, telemetry callback) read with Load().
struct alignas(64) WorkerStats {
  uint64_t value[kNumCounters] = {};

  void Inc(Counter c, uint64_t n = 1) {
    // Single writer: a relaxed atomic store keeps readers tear-free on any
    // platform without a locked RMW on the hot path.
    uint64_t* v = &value[static_cast<size_t>(c)];
    __atomic_store_n(v, *v + n, __ATOMIC_RELAXED);
  }
  void Set(Counter c, uint64_t n) {
    __atomic_store_n(&value[static_cast<size_t>(c)], n, __ATOMIC_RELAXED);
  }
  void Dec(Counter c, uint64_t n = 1) {
    uint64_t* v = &value[static_cast<size_t>(c)];
    __atomic_store_n(v, *v - n, __ATOMIC_RELAXED);
  }
  // drop_parse broken down by net::ParseError (index 0, kOk, stays 0).
  uint64_t parse_error[net::kNumParseErrors] = {};

  void IncParse(net::ParseError e) {
    uint64_t* v = &parse_error[static_cast<size_t>(e)];
    __atomic_store_n(v, *v + 1, __ATOMIC_RELAXED);
    Inc(Counter::k_drop_parse);
  }
  uint64_t LoadParse(size_t i) const {
    return __atomic_load_n(&parse_error[i], __ATOMIC_RELAXED);
  }
  uint64_t Load(Counter c) const { return Load(static_cast<size_t>(c)); }
  uint64_t Load(size_t i) const {
    return __atomic_load_n(&value[i], __ATOMIC_RELAXED);
  }
};

}  // namespace moat::proxy
