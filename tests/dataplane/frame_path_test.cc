// The dataplane around the engine, on ring-backed ethdev ports
// (rte_eth_from_rings) in an in-process EAL without hugepages or PCI: no
// root, no NIC. A test puts mbufs on a port's RX ring and reads what the
// worker sent from its TX ring, so every frame's port, order, length and
// bytes can be checked, and the mempool's in-use count shows leaks.
//
// FramePath tests drive verdicts directly; Worker tests run whole poll
// rounds with a real engine.

#include "moat/dataplane/frame_path.h"

#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_eth_ring.h>
#include <rte_ethdev.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "moat/dataplane/dataplane.h"
#include "moat/dataplane/worker.h"
#include "moat/net/bytes.h"
#include "moat/net/checksum.h"
#include "moat/net/packet.h"
#include "moat/proxy/config.h"
#include "moat/proxy/engine.h"
#include "testing/packet_builder.h"

namespace moat::dataplane {
namespace {

using proxy::Side;
using proxy::Verdict;

constexpr unsigned kRingSize = 1024;
// The TX ring of the "tight" port holds this many frames.
constexpr unsigned kTightRing = 8;

// One ring-backed port: frames a test enqueues on `rx` are what
// rte_eth_rx_burst returns; what the port transmits lands on `tx`.
struct RingPort {
  uint16_t id = 0;
  rte_ring* rx = nullptr;
  rte_ring* tx = nullptr;
};

struct Lab {
  rte_mempool* pool = nullptr;
  RingPort client, server, tight;
};
Lab* g_lab = nullptr;

bool MakePort(const char* name, unsigned tx_size, rte_mempool* pool, RingPort* p) {
  const std::string rxn = std::string(name) + "_rx", txn = std::string(name) + "_tx";
  p->rx = rte_ring_create(rxn.c_str(), kRingSize, SOCKET_ID_ANY, RING_F_SP_ENQ | RING_F_SC_DEQ);
  p->tx = rte_ring_create(txn.c_str(), tx_size, SOCKET_ID_ANY,
                          RING_F_SP_ENQ | RING_F_SC_DEQ | RING_F_EXACT_SZ);
  if (p->rx == nullptr || p->tx == nullptr) return false;
  const int id = rte_eth_from_rings(name, &p->rx, 1, &p->tx, 1, SOCKET_ID_ANY);
  if (id < 0) return false;
  p->id = static_cast<uint16_t>(id);
  rte_eth_conf conf;
  std::memset(&conf, 0, sizeof(conf));
  return rte_eth_dev_configure(p->id, 1, 1, &conf) == 0 &&
         rte_eth_rx_queue_setup(p->id, 0, 256, SOCKET_ID_ANY, nullptr, pool) == 0 &&
         rte_eth_tx_queue_setup(p->id, 0, 256, SOCKET_ID_ANY, nullptr) == 0 &&
         rte_eth_dev_start(p->id) == 0;
}

unsigned InUse() { return rte_mempool_in_use_count(g_lab->pool); }

// Takes everything a port transmitted off its TX ring.
std::vector<rte_mbuf*> Sent(const RingPort& p) {
  std::vector<rte_mbuf*> v(kRingSize);
  const unsigned n =
      rte_ring_dequeue_burst(p.tx, reinterpret_cast<void**>(v.data()), kRingSize, nullptr);
  v.resize(n);
  return v;
}

void FreeAll(std::vector<rte_mbuf*>& v) {
  for (rte_mbuf* m : v) rte_pktmbuf_free(m);
  v.clear();
}

std::vector<uint8_t> Bytes(const rte_mbuf* m) {
  const uint8_t* d = rte_pktmbuf_mtod(m, const uint8_t*);
  return std::vector<uint8_t>(d, d + m->data_len);
}

// A frame whose bytes say which one it is: `tag` in every byte.
std::vector<uint8_t> Tagged(uint8_t tag, size_t len = 100) {
  return std::vector<uint8_t>(len, tag);
}

rte_mbuf* Mbuf(const std::vector<uint8_t>& bytes, rte_mempool* pool = nullptr) {
  rte_mbuf* m = rte_pktmbuf_alloc(pool != nullptr ? pool : g_lab->pool);
  if (m == nullptr) return nullptr;
  char* d = rte_pktmbuf_append(m, static_cast<uint16_t>(bytes.size()));
  if (d == nullptr) {
    rte_pktmbuf_free(m);
    return nullptr;
  }
  std::memcpy(d, bytes.data(), bytes.size());
  return m;
}

uint64_t RealtimeNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

class RingTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_NE(g_lab, nullptr) << "EAL or the ring ports did not come up (see the log above)";
    Drain();
    in_use_before_ = InUse();
  }
  void TearDown() override {
    Drain();
    EXPECT_EQ(InUse(), in_use_before_) << "mbufs leaked";
  }
  static void Drain() {
    for (RingPort* p : {&g_lab->client, &g_lab->server, &g_lab->tight}) {
      for (rte_ring* r : {p->rx, p->tx}) {
        void* m;
        while (rte_ring_dequeue(r, &m) == 0) rte_pktmbuf_free(static_cast<rte_mbuf*>(m));
      }
    }
  }
  unsigned in_use_before_ = 0;
};

class FramePathTest : public RingTest {
 protected:
  FramePath::Config Config(uint16_t server_port) const {
    FramePath::Config c;
    c.port_ids[0] = g_lab->client.id;
    c.port_ids[1] = server_port;
    c.queue = 0;
    c.pool = g_lab->pool;
    c.burst = 32;
    c.drain_tsc = 1000000;
    return c;
  }
  std::unique_ptr<FramePath> Make(uint16_t server_port) {
    return std::make_unique<FramePath>(Config(server_port), &stats_, &timer_);
  }
  std::unique_ptr<FramePath> Make() { return Make(g_lab->server.id); }

  // Applies `verdicts` to fresh frames tagged 1, 2, ... coming in on `in`,
  // with the engine's lengths `lens`.
  void ApplyTagged(FramePath* path, Side in, const std::vector<Verdict>& verdicts,
                   std::vector<uint16_t> lens, proxy::Output* out) {
    std::vector<rte_mbuf*> pkts;
    for (size_t i = 0; i < verdicts.size(); ++i) {
      pkts.push_back(Mbuf(Tagged(static_cast<uint8_t>(i + 1))));
      ASSERT_NE(pkts.back(), nullptr);
    }
    path->Apply(in, pkts.data(), lens.data(), verdicts.data(),
                static_cast<uint16_t>(verdicts.size()), out);
  }

  static void Emit(proxy::Output* out, Side side, const std::vector<uint8_t>& bytes) {
    uint8_t* b = out->Next();
    ASSERT_NE(b, nullptr);
    std::memcpy(b, bytes.data(), bytes.size());
    out->Commit(side, bytes.size());
  }

  uint64_t Count(DpCounter c) const { return stats_.Load(c); }

  DataplaneStats stats_;
  StageStats stages_;
  StageTimer timer_{&stages_};
  proxy::Output out_;
};

TEST_F(FramePathTest, ForwardLeavesThroughTheOtherPortWithTheEnginesLength) {
  auto path = Make();
  // The engine shortened the first frame and lengthened the second.
  ApplyTagged(path.get(), Side::kClient, {Verdict::kForward, Verdict::kForward}, {60, 120}, &out_);
  path->FlushAll(0);
  std::vector<rte_mbuf*> s = Sent(g_lab->server);
  std::vector<rte_mbuf*> c = Sent(g_lab->client);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(c.size(), 0u);
  EXPECT_EQ(s[0]->data_len, 60);
  EXPECT_EQ(s[0]->pkt_len, 60u);
  EXPECT_EQ(s[1]->data_len, 120);
  EXPECT_EQ(s[1]->pkt_len, 120u);
  EXPECT_EQ(Bytes(s[0])[0], 1);
  EXPECT_EQ(Bytes(s[1])[0], 2);
  EXPECT_EQ(Count(DpCounter::k_tx_frames), 2u);
  FreeAll(s);
  FreeAll(c);
}

TEST_F(FramePathTest, ForwardFromTheServerSideLeavesThroughTheClientPort) {
  auto path = Make();
  ApplyTagged(path.get(), Side::kServer, {Verdict::kForward}, {100}, &out_);
  path->FlushAll(0);
  std::vector<rte_mbuf*> c = Sent(g_lab->client);
  std::vector<rte_mbuf*> s = Sent(g_lab->server);
  EXPECT_EQ(c.size(), 1u);
  EXPECT_EQ(s.size(), 0u);
  FreeAll(c);
  FreeAll(s);
}

TEST_F(FramePathTest, ReflectLeavesThroughTheSamePort) {
  auto path = Make();
  ApplyTagged(path.get(), Side::kClient, {Verdict::kReflect}, {74}, &out_);
  path->FlushAll(0);
  std::vector<rte_mbuf*> c = Sent(g_lab->client);
  std::vector<rte_mbuf*> s = Sent(g_lab->server);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(s.size(), 0u);
  EXPECT_EQ(c[0]->data_len, 74);
  EXPECT_EQ(c[0]->pkt_len, 74u);
  FreeAll(c);
}

TEST_F(FramePathTest, DropAndConsumedAreFreed) {
  auto path = Make();
  ApplyTagged(path.get(), Side::kClient,
              {Verdict::kDrop, Verdict::kConsumed, Verdict::kForward, Verdict::kDrop},
              {100, 100, 100, 100}, &out_);
  // Only the forwarded frame is still in use, in the TX buffer.
  EXPECT_EQ(InUse(), in_use_before_ + 1);
  EXPECT_EQ(path->buffered(Side::kServer), 1);
  path->FlushAll(0);
  std::vector<rte_mbuf*> s = Sent(g_lab->server);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(Bytes(s[0])[0], 3);
  FreeAll(s);
  EXPECT_EQ(InUse(), in_use_before_);
}

TEST_F(FramePathTest, GeneratedFramesLeaveInOrderBeforeTheBurstsForwardedFrames) {
  auto path = Make();
  // As after a backend's SYN-ACK: the third ACK and released client data
  // for the backend, a frame for the client; then the burst's own frames.
  Emit(&out_, Side::kServer, Tagged(0xa1, 54));
  Emit(&out_, Side::kClient, Tagged(0xc1, 60));
  Emit(&out_, Side::kServer, Tagged(0xa2, 66));
  ApplyTagged(path.get(), Side::kClient, {Verdict::kForward, Verdict::kReflect, Verdict::kForward},
              {100, 100, 100}, &out_);
  EXPECT_EQ(out_.size(), 0u);
  path->FlushAll(0);
  std::vector<rte_mbuf*> s = Sent(g_lab->server);
  std::vector<rte_mbuf*> c = Sent(g_lab->client);
  ASSERT_EQ(s.size(), 4u);
  EXPECT_EQ(Bytes(s[0]), Tagged(0xa1, 54));
  EXPECT_EQ(Bytes(s[1]), Tagged(0xa2, 66));
  EXPECT_EQ(Bytes(s[2])[0], 1);
  EXPECT_EQ(Bytes(s[3])[0], 3);
  ASSERT_EQ(c.size(), 2u);
  EXPECT_EQ(Bytes(c[0]), Tagged(0xc1, 60));
  EXPECT_EQ(Bytes(c[1])[0], 2);
  EXPECT_EQ(Count(DpCounter::k_frames_generated), 3u);
  EXPECT_EQ(Count(DpCounter::k_tx_frames), 6u);
  FreeAll(s);
  FreeAll(c);
}

TEST_F(FramePathTest, AFullTxRingCountsDropTxFullAndFreesTheFrames) {
  auto path = Make(g_lab->tight.id);
  std::vector<Verdict> v(20, Verdict::kForward);
  ApplyTagged(path.get(), Side::kClient, v, std::vector<uint16_t>(20, 100), &out_);
  path->FlushAll(0);
  std::vector<rte_mbuf*> t = Sent(g_lab->tight);
  EXPECT_EQ(t.size(), kTightRing);
  EXPECT_EQ(Count(DpCounter::k_drop_tx_full), 20u - kTightRing);
  // The ones that did not fit are back in the pool.
  EXPECT_EQ(InUse(), in_use_before_ + kTightRing);
  FreeAll(t);
}

TEST_F(FramePathTest, AnEmptyPoolCountsDropGeneratedNombuf) {
  rte_mempool* tiny =
      rte_pktmbuf_pool_create("dp_test_tiny", 7, 0, 0, RTE_MBUF_DEFAULT_BUF_SIZE, SOCKET_ID_ANY);
  ASSERT_NE(tiny, nullptr) << rte_strerror(rte_errno);
  FramePath::Config c = Config(g_lab->server.id);
  c.pool = tiny;
  FramePath path(c, &stats_, &timer_);
  std::vector<rte_mbuf*> held;
  while (rte_mbuf* m = rte_pktmbuf_alloc(tiny)) held.push_back(m);
  Emit(&out_, Side::kServer, Tagged(1));
  Emit(&out_, Side::kServer, Tagged(2));
  path.SendGenerated(&out_);
  EXPECT_EQ(Count(DpCounter::k_drop_generated_nombuf), 2u);
  EXPECT_EQ(Count(DpCounter::k_frames_generated), 0u);
  EXPECT_EQ(out_.size(), 0u) << "the frames are dropped, not kept for later";
  EXPECT_EQ(path.buffered(Side::kServer), 0);
  FreeAll(held);
  EXPECT_EQ(rte_mempool_in_use_count(tiny), 0u);
  rte_mempool_free(tiny);
}

TEST_F(FramePathTest, ChainedMbufsAreDroppedAndCounted) {
  auto path = Make();
  rte_mbuf* pkts[3] = {Mbuf(Tagged(1)), Mbuf(Tagged(2)), Mbuf(Tagged(3))};
  rte_mbuf* tail = Mbuf(Tagged(9, 40));
  ASSERT_EQ(rte_pktmbuf_chain(pkts[1], tail), 0);
  uint8_t* frames[3];
  uint16_t lens[3];
  uint16_t capacity = 0;
  ASSERT_EQ(path->Gather(Side::kClient, pkts, 3, frames, lens, &capacity), 2);
  EXPECT_EQ(Count(DpCounter::k_drop_multiseg), 1u);
  // The single-segment frames stay, in order, with their data and length.
  EXPECT_EQ(frames[0][0], 1);
  EXPECT_EQ(frames[1][0], 3);
  EXPECT_EQ(lens[0], 100);
  EXPECT_EQ(capacity, pkts[0]->buf_len - pkts[0]->data_off);
  // Both segments of the chain went back to the pool.
  EXPECT_EQ(InUse(), in_use_before_ + 2);
  path->Free(pkts, 2);
}

TEST_F(FramePathTest, AFullBurstLeavesAtOnce) {
  auto path = Make();
  std::vector<Verdict> v(32, Verdict::kForward);
  ApplyTagged(path.get(), Side::kClient, v, std::vector<uint16_t>(32, 100), &out_);
  // No EndRound, no flush: the buffer filled and went out by itself.
  EXPECT_EQ(path->buffered(Side::kServer), 0);
  std::vector<rte_mbuf*> s = Sent(g_lab->server);
  EXPECT_EQ(s.size(), 32u);
  FreeAll(s);
}

TEST_F(FramePathTest, APartialBurstLeavesAtTheEndOfTheRound) {
  auto path = Make();
  path->FlushAll(1000);
  ApplyTagged(path.get(), Side::kClient, {Verdict::kForward, Verdict::kReflect}, {100, 100}, &out_);
  EXPECT_EQ(path->buffered(Side::kServer), 1);
  EXPECT_EQ(path->buffered(Side::kClient), 1);
  // Long before the drain deadline: the RX queues were not full, so
  // nothing more is coming right now.
  path->EndRound(/*saturated=*/false, 1001);
  EXPECT_EQ(path->buffered(Side::kServer), 0);
  EXPECT_EQ(path->buffered(Side::kClient), 0);
  std::vector<rte_mbuf*> s = Sent(g_lab->server);
  std::vector<rte_mbuf*> c = Sent(g_lab->client);
  EXPECT_EQ(s.size(), 1u);
  EXPECT_EQ(c.size(), 1u);
  FreeAll(s);
  FreeAll(c);
}

TEST_F(FramePathTest, ASaturatedRoundHoldsAPartialBurstUntilTheDrainDeadline) {
  auto path = Make();  // drain_tsc = 1000000
  path->FlushAll(1000);
  ApplyTagged(path.get(), Side::kClient, {Verdict::kForward}, {100}, &out_);
  path->EndRound(/*saturated=*/true, 2000);
  EXPECT_EQ(path->buffered(Side::kServer), 1) << "a full burst is right behind it";
  EXPECT_EQ(rte_ring_count(g_lab->server.tx), 0u);
  path->EndRound(/*saturated=*/true, 1000 + 1000000);
  EXPECT_EQ(path->buffered(Side::kServer), 0) << "the deadline is the backstop";
  std::vector<rte_mbuf*> s = Sent(g_lab->server);
  EXPECT_EQ(s.size(), 1u);
  FreeAll(s);
}

TEST_F(FramePathTest, DestructorFreesWhatIsStillBuffered) {
  {
    auto path = Make();
    ApplyTagged(path.get(), Side::kClient, {Verdict::kForward, Verdict::kReflect}, {100, 100},
                &out_);
    EXPECT_EQ(InUse(), in_use_before_ + 2);
  }
  EXPECT_EQ(InUse(), in_use_before_);
  EXPECT_EQ(rte_ring_count(g_lab->server.tx), 0u);
}

// ---------------------------------------------------------------------------
// Whole poll rounds through a real engine.

class WorkerTest : public RingTest {
 protected:
  void SetUp() override {
    RingTest::SetUp();
    if (HasFatalFailure()) return;
    proxy::EngineConfig ec;
    auto services = proxy::ParseProtect("198.18.0.2:80");
    ASSERT_TRUE(services.ok());
    ec.services = *services;
    ec.flow_capacity = 1024;
    ec.held_slots = 64;
    for (size_t i = 0; i < sizeof(ec.secret.bytes); ++i) {
      ec.secret.bytes[i] = static_cast<uint8_t>(i * 3 + 1);
    }
    auto engine = proxy::Engine::Create(ec, RealtimeNs());
    ASSERT_TRUE(engine.ok()) << engine.status();
    const uint16_t ports[2] = {g_lab->client.id, g_lab->server.id};
    WorkerConfig wc;  // moat's defaults: burst 32, tx_drain_us 100
    auto w = Worker::Create(0, 0, ports, g_lab->pool, wc, *std::move(engine));
    ASSERT_TRUE(w.ok()) << w.status();
    worker_ = *std::move(w);
    // An empty first round: from here on the drain deadline is far away
    // (the rounds below are one TSC cycle apart), so only the flush policy
    // can make a frame leave in the round it arrived in.
    tsc_ = rte_rdtsc();
    worker_->RunRound(tsc_, RealtimeNs());
  }
  void TearDown() override {
    worker_.reset();
    RingTest::TearDown();
  }

  static void Receive(const RingPort& p, const std::vector<uint8_t>& frame) {
    rte_mbuf* m = Mbuf(frame);
    ASSERT_NE(m, nullptr);
    ASSERT_EQ(rte_ring_enqueue(p.rx, m), 0);
  }
  uint16_t Round() { return worker_->RunRound(++tsc_, RealtimeNs()); }

  std::unique_ptr<Worker> worker_;
  uint64_t tsc_ = 0;
};

TEST_F(WorkerTest, ALoneBridgedFrameLeavesInTheRoundItArrived) {
  // TCP to a port moat does not protect: bridged unchanged.
  const std::vector<uint8_t> f =
      moat::testing::TcpPacket().Ports(40000, 22).Flags(net::kTcpSyn).Seq(7).Build();
  Receive(g_lab->client, f);
  EXPECT_EQ(Round(), 1);
  std::vector<rte_mbuf*> s = Sent(g_lab->server);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(Bytes(s[0]), f);
  EXPECT_EQ(worker_->stats().Load(DpCounter::k_rx_frames), 1u);
  EXPECT_EQ(worker_->stats().Load(DpCounter::k_tx_frames), 1u);
  FreeAll(s);
}

TEST_F(WorkerTest, ASynIsAnsweredInTheRoundItArrived) {
  const std::vector<uint8_t> syn = moat::testing::TcpPacket()
                                       .Ports(40000, 80)
                                       .Flags(net::kTcpSyn)
                                       .Seq(1000)
                                       .Mss(1460)
                                       .SackPermitted()
                                       .Build();
  Receive(g_lab->client, syn);
  EXPECT_EQ(Round(), 1);
  std::vector<rte_mbuf*> c = Sent(g_lab->client);
  std::vector<rte_mbuf*> s = Sent(g_lab->server);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(s.size(), 0u) << "the backend never sees the SYN";
  std::vector<uint8_t> synack = Bytes(c[0]);
  net::PacketView v;
  ASSERT_EQ(moat::testing::Parse(synack, &v), net::ParseError::kOk);
  EXPECT_EQ(v.tcp_flags(), net::kTcpSyn | net::kTcpAck);
  EXPECT_EQ(v.ack().value(), 1001u);
  EXPECT_EQ(worker_->engine_stats().Load(proxy::Counter::k_synack_sent), 1u);
  FreeAll(c);
}

TEST_F(WorkerTest, ASaturatedRoundKeepsBatchingForTheNextRound) {
  // Full bursts on both ports: 31 bridged frames and a SYN from the
  // client, 32 bridged frames from the server.
  for (uint32_t i = 0; i < 31; ++i) {
    Receive(g_lab->client, moat::testing::TcpPacket().Ports(40000, 22).Seq(i).Build());
  }
  Receive(g_lab->client,
          moat::testing::TcpPacket().Ports(40001, 80).Flags(net::kTcpSyn).Seq(5).Build());
  for (uint32_t i = 0; i < 32; ++i) {
    Receive(
        g_lab->server,
        moat::testing::TcpPacket().V4("198.18.0.2", "198.18.0.1").Ports(22, 40000).Seq(i).Build());
  }
  EXPECT_EQ(Round(), 64);
  // The client port's buffer filled (the SYN-ACK and 31 of the server's
  // frames) and went out; the server port's 31 wait for more.
  EXPECT_EQ(rte_ring_count(g_lab->client.tx), 32u);
  EXPECT_EQ(rte_ring_count(g_lab->server.tx), 0u);
  // The next round finds the RX queues empty: everything goes.
  EXPECT_EQ(Round(), 0);
  EXPECT_EQ(rte_ring_count(g_lab->client.tx), 33u);
  EXPECT_EQ(rte_ring_count(g_lab->server.tx), 31u);
  EXPECT_EQ(worker_->stats().Load(DpCounter::k_tx_frames), 64u);
}

TEST_F(WorkerTest, AChainedFrameIsDroppedBeforeTheEngine) {
  rte_mbuf* m = Mbuf(Tagged(1));
  ASSERT_NE(m, nullptr);
  ASSERT_EQ(rte_pktmbuf_chain(m, Mbuf(Tagged(2))), 0);
  ASSERT_EQ(rte_ring_enqueue(g_lab->client.rx, m), 0);
  EXPECT_EQ(Round(), 1);
  EXPECT_EQ(worker_->stats().Load(DpCounter::k_drop_multiseg), 1u);
  EXPECT_EQ(rte_ring_count(g_lab->server.tx) + rte_ring_count(g_lab->client.tx), 0u);
}

// With --idle_sleep_us the worker's thread takes a 1 us timer slack:
// Linux's default (50 us) would stretch every idle sleep by that much, and
// the first frame after a quiet spell waits for all of it.
TEST_F(WorkerTest, AnIdleSleepingWorkerSleepsWithATightTimerSlack) {
  worker_.reset();
  proxy::EngineConfig ec;
  ec.services = *proxy::ParseProtect("198.18.0.2:80");
  ec.flow_capacity = 64;
  ec.held_slots = 8;
  auto engine = proxy::Engine::Create(ec, RealtimeNs());
  ASSERT_TRUE(engine.ok()) << engine.status();
  const uint16_t ports[2] = {g_lab->client.id, g_lab->server.id};
  WorkerConfig wc;
  wc.idle_sleep_us = 20;
  auto w = Worker::Create(0, 0, ports, g_lab->pool, wc, *std::move(engine));
  ASSERT_TRUE(w.ok()) << w.status();

  std::atomic<pid_t> tid{0};
  volatile bool stop = false;
  std::thread t([&] {
    tid = static_cast<pid_t>(syscall(SYS_gettid));
    (*w)->Run(&stop);
  });
  auto slack = [&]() -> long {
    // Per thread at /proc/<tid> (task/<tid> has no timerslack_ns).
    std::ifstream in("/proc/" + std::to_string(tid.load()) + "/timerslack_ns");
    long ns = -1;
    in >> ns;
    return ns;
  };
  // Waits for the condition, bounded: Run() sets it before its first round.
  long seen = -1;
  for (int i = 0; i < 10000 && seen != static_cast<long>(Worker::kIdleTimerSlackNs); ++i) {
    if (tid.load() != 0) seen = slack();
    if (seen != static_cast<long>(Worker::kIdleTimerSlackNs)) usleep(1000);
  }
  stop = true;
  t.join();
  EXPECT_EQ(seen, static_cast<long>(Worker::kIdleTimerSlackNs));
  EXPECT_GT((*w)->stats().Load(DpCounter::k_idle_sleeps), 0u);
}

// ---------------------------------------------------------------------------
// Checksum offloads (frame_path.h, frame_meta.h). net_ring offers none,
// so the tests set what a NIC would: RX verdicts in ol_flags before
// the frame reaches the RX ring, FramePath::Config::rx_checksum and
// EngineConfig::tx_checksum_offload as Dataplane::Create sets them from a
// port that has them.

constexpr uint64_t kTxCksumFlags =
    RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IPV6 | RTE_MBUF_F_TX_IP_CKSUM | RTE_MBUF_F_TX_L4_MASK;
constexpr uint64_t kRxCksumFlags = RTE_MBUF_F_RX_IP_CKSUM_MASK | RTE_MBUF_F_RX_L4_CKSUM_MASK;

TEST_F(FramePathTest, GatherTranslatesTheNicsVerdicts) {
  FramePath::Config cfg = Config(g_lab->server.id);
  cfg.rx_checksum[static_cast<int>(Side::kClient)] = true;
  FramePath path(cfg, &stats_, &timer_);
  const uint64_t flags[] = {
      RTE_MBUF_F_RX_IP_CKSUM_GOOD | RTE_MBUF_F_RX_L4_CKSUM_GOOD,
      RTE_MBUF_F_RX_IP_CKSUM_BAD | RTE_MBUF_F_RX_L4_CKSUM_BAD,
      RTE_MBUF_F_RX_IP_CKSUM_UNKNOWN | RTE_MBUF_F_RX_L4_CKSUM_UNKNOWN,
      RTE_MBUF_F_RX_IP_CKSUM_NONE | RTE_MBUF_F_RX_L4_CKSUM_NONE,
      RTE_MBUF_F_RX_IP_CKSUM_GOOD | RTE_MBUF_F_RX_L4_CKSUM_UNKNOWN,
  };
  constexpr uint16_t kN = sizeof(flags) / sizeof(flags[0]);
  using H = proxy::HwChecksum;
  const H want_ip[kN] = {H::kGood, H::kBad, H::kUnknown, H::kUnknown, H::kGood};
  const H want_l4[kN] = {H::kGood, H::kBad, H::kUnknown, H::kUnknown, H::kUnknown};
  rte_mbuf* pkts[kN];
  for (uint16_t i = 0; i < kN; ++i) {
    pkts[i] = Mbuf(Tagged(static_cast<uint8_t>(i + 1)));
    ASSERT_NE(pkts[i], nullptr);
    pkts[i]->ol_flags |= flags[i];
  }
  uint8_t* frames[kN];
  uint16_t lens[kN];
  uint16_t capacity;
  proxy::FrameMeta meta[kN];
  ASSERT_EQ(path.Gather(Side::kClient, pkts, kN, frames, lens, &capacity, meta), kN);
  for (uint16_t i = 0; i < kN; ++i) {
    EXPECT_EQ(meta[i].rx_ip, want_ip[i]) << i;
    EXPECT_EQ(meta[i].rx_l4, want_l4[i]) << i;
    EXPECT_FALSE(meta[i].tx.offloaded()) << i;
  }
  // The server's port gives no verdicts: whatever its mbufs' flags say
  // (a PMD that leaves stale bits), the engine sums in software.
  ASSERT_EQ(path.Gather(Side::kServer, pkts, kN, frames, lens, &capacity, meta), kN);
  for (uint16_t i = 0; i < kN; ++i) {
    EXPECT_EQ(meta[i].rx_ip, H::kUnknown) << i;
    EXPECT_EQ(meta[i].rx_l4, H::kUnknown) << i;
  }
  path.Free(pkts, kN);
}

// Frames sent on in their RX mbuf lose the RX flags; the one the engine
// left checksums to gets the TX flags and lengths; generated frames too.
TEST_F(FramePathTest, SentFramesCarryOnlyTheTxFlagsTheEngineAskedFor) {
  auto path = Make();
  rte_mbuf* pkts[2];
  for (int i = 0; i < 2; ++i) {
    pkts[i] = Mbuf(Tagged(static_cast<uint8_t>(i + 1)));
    ASSERT_NE(pkts[i], nullptr);
    pkts[i]->ol_flags |=
        RTE_MBUF_F_RX_IP_CKSUM_GOOD | RTE_MBUF_F_RX_L4_CKSUM_GOOD | RTE_MBUF_F_RX_RSS_HASH;
  }
  proxy::FrameMeta meta[2];
  meta[1].tx = proxy::TxChecksum{18, 40, true};
  const Verdict verdicts[2] = {Verdict::kForward, Verdict::kReflect};
  const uint16_t lens[2] = {100, 100};
  // A generated IPv4 frame with checksums left to the NIC, then the burst.
  uint8_t* b = out_.Next();
  std::memset(b, 0xa2, 60);
  out_.Commit(Side::kServer, 60, proxy::TxChecksum{14, 20, false});
  path->Apply(Side::kClient, pkts, lens, verdicts, 2, &out_, meta);
  path->FlushAll(0);
  std::vector<rte_mbuf*> s = Sent(g_lab->server);
  std::vector<rte_mbuf*> c = Sent(g_lab->client);
  ASSERT_EQ(s.size(), 2u);
  ASSERT_EQ(c.size(), 1u);
  // Generated: TX flags and lengths.
  EXPECT_EQ(Bytes(s[0])[0], 0xa2);
  EXPECT_EQ(s[0]->ol_flags & kTxCksumFlags,
            RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM | RTE_MBUF_F_TX_TCP_CKSUM);
  EXPECT_EQ(s[0]->l2_len, 14u);
  EXPECT_EQ(s[0]->l3_len, 20u);
  // Forwarded: no RX flags left, no TX flags.
  EXPECT_EQ(Bytes(s[1])[0], 1);
  EXPECT_EQ(s[1]->ol_flags & (kRxCksumFlags | RTE_MBUF_F_RX_RSS_HASH), 0u);
  EXPECT_EQ(s[1]->ol_flags & kTxCksumFlags, 0u);
  // Reflected, answered in place with offload: IPv6 flags, tagged L2.
  EXPECT_EQ(c[0]->ol_flags & (kRxCksumFlags | RTE_MBUF_F_RX_RSS_HASH), 0u);
  EXPECT_EQ(c[0]->ol_flags & kTxCksumFlags, RTE_MBUF_F_TX_IPV6 | RTE_MBUF_F_TX_TCP_CKSUM);
  EXPECT_EQ(c[0]->l2_len, 18u);
  EXPECT_EQ(c[0]->l3_len, 40u);
  FreeAll(s);
  FreeAll(c);
}

// Whole rounds through a real engine with the offloads "available".
class OffloadWorkerTest : public RingTest {
 protected:
  void Make(bool rx, bool tx) {
    proxy::EngineConfig ec;
    auto services = proxy::ParseProtect("198.18.0.2:80");
    ASSERT_TRUE(services.ok());
    ec.services = *services;
    ec.flow_capacity = 1024;
    ec.held_slots = 64;
    for (size_t i = 0; i < sizeof(ec.secret.bytes); ++i) {
      ec.secret.bytes[i] = static_cast<uint8_t>(i * 3 + 1);
    }
    ec.tx_checksum_offload[0] = ec.tx_checksum_offload[1] = tx;
    auto engine = proxy::Engine::Create(ec, RealtimeNs());
    ASSERT_TRUE(engine.ok()) << engine.status();
    const uint16_t ports[2] = {g_lab->client.id, g_lab->server.id};
    WorkerConfig wc;
    wc.rx_checksum[0] = wc.rx_checksum[1] = rx;
    auto w = Worker::Create(0, 0, ports, g_lab->pool, wc, *std::move(engine));
    ASSERT_TRUE(w.ok()) << w.status();
    worker_ = *std::move(w);
    tsc_ = rte_rdtsc();
    worker_->RunRound(tsc_, RealtimeNs());
  }
  void TearDown() override {
    worker_.reset();
    RingTest::TearDown();
  }

  static std::vector<uint8_t> Syn(uint16_t client_port, bool break_checksum) {
    std::vector<uint8_t> f = moat::testing::TcpPacket()
                                 .Ports(client_port, 80)
                                 .Flags(net::kTcpSyn)
                                 .Seq(1000)
                                 .Mss(1460)
                                 .SackPermitted()
                                 .Build();
    if (break_checksum) f[14 + 20 + 16] ^= 0x5a;
    return f;
  }
  // Puts a frame on the client's RX ring with the NIC's verdict flags.
  static void Receive(const std::vector<uint8_t>& frame, uint64_t rx_flags) {
    rte_mbuf* m = Mbuf(frame);
    ASSERT_NE(m, nullptr);
    m->ol_flags |= rx_flags;
    ASSERT_EQ(rte_ring_enqueue(g_lab->client.rx, m), 0);
  }
  uint16_t Round() { return worker_->RunRound(++tsc_, RealtimeNs()); }
  uint64_t EngineCount(proxy::Counter c) const { return worker_->engine_stats().Load(c); }

  std::unique_ptr<Worker> worker_;
  uint64_t tsc_ = 0;
};

constexpr uint64_t kGood = RTE_MBUF_F_RX_IP_CKSUM_GOOD | RTE_MBUF_F_RX_L4_CKSUM_GOOD;
constexpr uint64_t kBad = RTE_MBUF_F_RX_IP_CKSUM_GOOD | RTE_MBUF_F_RX_L4_CKSUM_BAD;

TEST_F(OffloadWorkerTest, GoodIsAnsweredDespiteAWrongChecksum) {
  Make(/*rx=*/true, /*tx=*/false);
  Receive(Syn(40000, /*break_checksum=*/true), kGood);
  EXPECT_EQ(Round(), 1);
  std::vector<rte_mbuf*> c = Sent(g_lab->client);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(EngineCount(proxy::Counter::k_synack_sent), 1u);
  EXPECT_EQ(EngineCount(proxy::Counter::k_drop_bad_checksum), 0u);
  // The reflected SYN's RX flags did not come along, and without TX
  // offload its checksums are complete.
  EXPECT_EQ(c[0]->ol_flags & (kRxCksumFlags | kTxCksumFlags), 0u);
  std::vector<uint8_t> synack = Bytes(c[0]);
  net::PacketView v;
  ASSERT_EQ(moat::testing::Parse(synack, &v), net::ParseError::kOk);
  EXPECT_TRUE(net::VerifyTcpChecksum(v));
  EXPECT_TRUE(net::VerifyIpv4HeaderChecksum(v));
  FreeAll(c);
}

TEST_F(OffloadWorkerTest, BadIsDroppedAndCountedDespiteARightChecksum) {
  Make(/*rx=*/true, /*tx=*/false);
  Receive(Syn(40000, /*break_checksum=*/false), kBad);
  EXPECT_EQ(Round(), 1);
  EXPECT_EQ(rte_ring_count(g_lab->client.tx) + rte_ring_count(g_lab->server.tx), 0u);
  EXPECT_EQ(EngineCount(proxy::Counter::k_drop_bad_checksum), 1u);
  EXPECT_EQ(EngineCount(proxy::Counter::k_synack_sent), 0u);
}

TEST_F(OffloadWorkerTest, UnknownFallsBackToSoftware) {
  Make(/*rx=*/true, /*tx=*/false);
  Receive(Syn(40000, /*break_checksum=*/true), 0);   // UNKNOWN
  Receive(Syn(40001, /*break_checksum=*/false), 0);  // UNKNOWN
  EXPECT_EQ(Round(), 2);
  std::vector<rte_mbuf*> c = Sent(g_lab->client);
  EXPECT_EQ(c.size(), 1u);
  EXPECT_EQ(EngineCount(proxy::Counter::k_drop_bad_checksum), 1u);
  EXPECT_EQ(EngineCount(proxy::Counter::k_synack_sent), 1u);
  FreeAll(c);
}

// A port without RX checksum offload: the flags are not read at all.
TEST_F(OffloadWorkerTest, WithoutRxOffloadTheFlagsAreNotRead) {
  Make(/*rx=*/false, /*tx=*/false);
  Receive(Syn(40000, /*break_checksum=*/true), kGood);
  EXPECT_EQ(Round(), 1);
  EXPECT_EQ(EngineCount(proxy::Counter::k_drop_bad_checksum), 1u);
  EXPECT_EQ(rte_ring_count(g_lab->client.tx), 0u);
}

// TX offload "available": the SYN-ACK leaves with the flags, the header
// lengths and the pseudo-header sum; completed as the NIC would, it
// verifies. The SYN's RX flags are gone.
TEST_F(OffloadWorkerTest, TheSynAckLeavesForTheNicToComplete) {
  Make(/*rx=*/true, /*tx=*/true);
  Receive(Syn(40000, /*break_checksum=*/false), kGood);
  EXPECT_EQ(Round(), 1);
  std::vector<rte_mbuf*> c = Sent(g_lab->client);
  ASSERT_EQ(c.size(), 1u);
  EXPECT_EQ(c[0]->ol_flags & kRxCksumFlags, 0u);
  EXPECT_EQ(c[0]->ol_flags & kTxCksumFlags,
            RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM | RTE_MBUF_F_TX_TCP_CKSUM);
  EXPECT_EQ(c[0]->l2_len, 14u);
  EXPECT_EQ(c[0]->l3_len, 20u);
  std::vector<uint8_t> synack = Bytes(c[0]);
  net::PacketView v;
  ASSERT_EQ(moat::testing::Parse(synack, &v), net::ParseError::kOk);
  EXPECT_EQ(v.tcp_flags(), net::kTcpSyn | net::kTcpAck);
  EXPECT_EQ(net::LoadBe16(v.ip() + 10), 0u) << "the NIC fills the IPv4 header checksum";
  const uint32_t pseudo = net::ChecksumAccumulate(v.src_addr(), 4) +
                          net::ChecksumAccumulate(v.dst_addr(), 4) + net::kIpProtoTcp +
                          static_cast<uint32_t>(synack.size() - v.l4_offset);
  EXPECT_EQ(net::LoadBe16(v.tcp() + 16), static_cast<uint16_t>(~net::ChecksumFinish(pseudo)));
  moat::testing::CompleteChecksumsAsNic(synack.data(), synack.size(), c[0]->l2_len, c[0]->l3_len,
                                        /*ipv4=*/true);
  EXPECT_TRUE(net::VerifyTcpChecksum(v));
  EXPECT_TRUE(net::VerifyIpv4HeaderChecksum(v));
  FreeAll(c);
}

// The frame the engine generates into its Output (the backend SYN after a
// cookie ACK) gets the flags on its fresh mbuf.
TEST_F(OffloadWorkerTest, AGeneratedBackendSynLeavesForTheNicToComplete) {
  Make(/*rx=*/false, /*tx=*/true);
  Receive(Syn(40000, /*break_checksum=*/false), 0);
  EXPECT_EQ(Round(), 1);
  std::vector<rte_mbuf*> c = Sent(g_lab->client);
  ASSERT_EQ(c.size(), 1u);
  std::vector<uint8_t> synack = Bytes(c[0]);
  FreeAll(c);
  net::PacketView sa;
  ASSERT_EQ(moat::testing::Parse(synack, &sa), net::ParseError::kOk);
  const std::vector<uint8_t> ack = moat::testing::TcpPacket()
                                       .Ports(40000, 80)
                                       .Flags(net::kTcpAck)
                                       .Seq(1001)
                                       .Ack(sa.seq().value() + 1)
                                       .Build();
  Receive(ack, 0);
  EXPECT_EQ(Round(), 1);
  std::vector<rte_mbuf*> s = Sent(g_lab->server);
  ASSERT_EQ(s.size(), 1u);
  EXPECT_EQ(s[0]->ol_flags & kTxCksumFlags,
            RTE_MBUF_F_TX_IPV4 | RTE_MBUF_F_TX_IP_CKSUM | RTE_MBUF_F_TX_TCP_CKSUM);
  EXPECT_EQ(s[0]->l2_len, 14u);
  EXPECT_EQ(s[0]->l3_len, 20u);
  std::vector<uint8_t> syn = Bytes(s[0]);
  net::PacketView v;
  ASSERT_EQ(moat::testing::Parse(syn, &v), net::ParseError::kOk);
  EXPECT_EQ(v.tcp_flags(), net::kTcpSyn);
  EXPECT_FALSE(net::VerifyTcpChecksum(v)) << "only the pseudo-header sum is in it";
  moat::testing::CompleteChecksumsAsNic(syn.data(), syn.size(), 14, 20, /*ipv4=*/true);
  EXPECT_TRUE(net::VerifyTcpChecksum(v));
  EXPECT_TRUE(net::VerifyIpv4HeaderChecksum(v));
  FreeAll(s);
}

// The engine's tables in EAL memory (SocketMemory, what Dataplane::Create
// gives every engine): the socket's heap grows by the engine's memory plan
// (plus rte_malloc's per-block headers) and shrinks back when the engine
// goes, and the engine answers a SYN from that memory.
TEST(SocketMemoryTest, EngineTablesComeFromEalMemoryOnTheSocket) {
  const int socket = static_cast<int>(rte_socket_id());
  proxy::EngineConfig ec;
  auto services = proxy::ParseProtect("198.18.0.2:80");
  ASSERT_TRUE(services.ok());
  ec.services = *services;
  ec.flow_capacity = 4096;
  ec.held_slots = 256;
  ec.syn_cache_entries = 512;
  ec.memory = SocketMemory(socket);
  const uint64_t plan = proxy::Engine::MemoryBytes(ec);
  rte_malloc_socket_stats before, during, after;
  ASSERT_EQ(rte_malloc_get_socket_stats(socket, &before), 0);
  {
    auto engine = proxy::Engine::Create(ec, 1000 * 1'000'000'000ull);
    ASSERT_TRUE(engine.ok()) << engine.status();
    ASSERT_EQ(rte_malloc_get_socket_stats(socket, &during), 0);
    const uint64_t grew = during.heap_allocsz_bytes - before.heap_allocsz_bytes;
    EXPECT_GE(grew, plan);
    EXPECT_LT(grew, plan + 16 * 1024) << "more than the plan's blocks and their headers";
    const std::vector<uint8_t> syn =
        moat::testing::TcpPacket().Ports(40000, 80).Flags(net::kTcpSyn).Seq(1).Mss(1460).Build();
    std::vector<uint8_t> frame(proxy::kMaxFrame);
    std::memcpy(frame.data(), syn.data(), syn.size());
    uint16_t len = static_cast<uint16_t>(syn.size());
    auto out = std::make_unique<proxy::Output>();
    EXPECT_EQ((*engine)->Process(proxy::Side::kClient, frame.data(), &len, proxy::kMaxFrame,
                                 1000 * 1'000'000'000ull, out.get()),
              proxy::Verdict::kReflect);
  }
  ASSERT_EQ(rte_malloc_get_socket_stats(socket, &after), 0);
  EXPECT_EQ(after.heap_allocsz_bytes, before.heap_allocsz_bytes);
}

// The start-up plan names every table with the engine's exact bytes, the
// mbuf pool as allocated, and a total that adds them up.
TEST(SocketMemoryTest, MemoryPlanListsEveryTableAndTheMbufPools) {
  ASSERT_NE(g_lab, nullptr);
  proxy::EngineConfig ec;
  ec.flow_capacity = 65536;
  const std::string plan = MemoryPlanText(ec, 2, {g_lab->pool});
  std::printf("%s", plan.c_str());
  for (const char* what : {"flow table", "flow timers", "held pool", "SYN cache",
                           "SYN-cache timers", "rate limiter", "per worker", "mbuf pools",
                           "total", "65536 flows", "x 2 worker(s) = 46.1 MiB", "2047 mbufs"}) {
    EXPECT_NE(plan.find(what), std::string::npos) << what << " missing from:\n" << plan;
  }
  EXPECT_NE(plan.find("flow table           12.0 MiB"), std::string::npos) << plan;
  EXPECT_NE(plan.find("per worker           23.1 MiB"), std::string::npos) << plan;
}

}  // namespace
}  // namespace moat::dataplane

// EAL once per process, after gtest has taken its flags: no hugepages, no
// shared config, no PCI, no telemetry socket, so it runs as any user and
// next to other EAL processes.
int main(int argc, char** argv) {
  ::testing::InitGoogleTest(&argc, argv);
  const char* eal[] = {argv[0],         "--no-huge",      "-m", "256", "--no-shconf",
                       "--no-pci",      "--no-telemetry", "-l", "0",   "--log-level",
                       "lib.eal:error", "--iova-mode=va"};
  std::vector<char*> args;
  for (const char* a : eal) args.push_back(const_cast<char*>(a));
  if (rte_eal_init(static_cast<int>(args.size()), args.data()) < 0) {
    std::fprintf(stderr, "dataplane_test: rte_eal_init failed: %s\n", rte_strerror(rte_errno));
    return 1;
  }
  static moat::dataplane::Lab lab;
  lab.pool = rte_pktmbuf_pool_create("dp_test_pool", 2047, 32, 0, RTE_MBUF_DEFAULT_BUF_SIZE,
                                     SOCKET_ID_ANY);
  if (lab.pool != nullptr &&
      moat::dataplane::MakePort("net_ring_client", moat::dataplane::kRingSize, lab.pool,
                                &lab.client) &&
      moat::dataplane::MakePort("net_ring_server", moat::dataplane::kRingSize, lab.pool,
                                &lab.server) &&
      moat::dataplane::MakePort("net_ring_tight", moat::dataplane::kTightRing, lab.pool,
                                &lab.tight)) {
    moat::dataplane::g_lab = &lab;
  } else {
    std::fprintf(stderr, "dataplane_test: cannot set up the ring ports: %s\n",
                 rte_strerror(rte_errno));
  }
  const int rc = RUN_ALL_TESTS();
  rte_eal_cleanup();
  return rc;
}
