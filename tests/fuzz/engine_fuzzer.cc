// libFuzzer target: the engine driven by arbitrary packet sequences from
// both sides. Random bytes alone would never get past the cookie check, so
// the input is a program: each op either builds a well-formed segment from
// the state of a few tracked connections (SYN, the ACK that echoes the
// cookie moat actually sent, the backend's SYN-ACK for the SYN moat actually
// sent, data/FIN/RST both ways with fuzzed offsets), or sends raw or mutated
// bytes, or moves the clock. That reaches every state of the handshake and
// splice machine while the raw ops keep the parser exposed.
//
// Invariants beyond "no crash": every frame the engine emits or forwards
// parses and carries valid checksums; the flow table never exceeds its
// capacity; and once the clock jumps a day ahead every flow is gone and
// every held-segment slot is back (nothing leaks).

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "FuzzedDataProvider.h"  // from clang, copied into the build dir
#include "moat/net/packet.h"
#include "moat/net/tcp_options.h"
#include "moat/proxy/config.h"
#include "moat/proxy/engine.h"
#include "testing/packet_builder.h"

namespace {

using moat::proxy::Engine;
using moat::proxy::Output;
using moat::proxy::Side;
using moat::proxy::Verdict;
namespace net = moat::net;

constexpr uint64_t kSec = 1'000'000'000;
constexpr uint64_t kT0 = 1'800'000'000 * kSec;
constexpr uint32_t kCapacity = 8;
constexpr uint32_t kHeld = 8;

void Check(bool ok, int line = __builtin_LINE()) {
  if (!ok) {
    std::fprintf(stderr, "invariant failed at %s:%d\n", __FILE__, line);
    std::abort();
  }
}

struct Conn {
  bool v6 = false;
  uint8_t client[16] = {};
  uint16_t cport = 0;
  uint32_t cisn = 0;
  uint32_t cookie = 0;    // moat's ISN, from the SYN-ACK it sent
  uint32_t moat_ts = 0;   // moat's TSval, for the client's echo
  uint32_t sisn = 0;      // backend ISN we chose
  uint32_t c_sent = 0;    // client bytes after the handshake
  uint32_t s_sent = 0;    // server bytes after the handshake
};

const uint8_t kServer4[4] = {198, 18, 0, 2};
const uint8_t kServer6[16] = {0x20, 0x01, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2};
// Payload bytes: an 'x', then zeros.
const uint8_t kPayload[1400] = {'x'};

struct Harness {
  std::unique_ptr<Engine> engine;
  Output out;
  uint64_t now = kT0;
  uint8_t frame[moat::proxy::kMaxFrame];
  uint16_t len = 0;
  // Without checksum verification a corrupted segment may be held and
  // released later; its checksum is then (correctly) still wrong.
  bool strict = true;

  void CheckFrame(const uint8_t* data, uint16_t n) {
    uint8_t copy[moat::proxy::kMaxFrame];
    Check(n <= sizeof(copy));
    std::memcpy(copy, data, n);
    net::PacketView v;
    if (net::ParseFrame(copy, n, &v) != net::ParseError::kOk) return;  // bridged junk
    if (v.is_tcp) Check(net::VerifyTcpChecksum(v));
    if (v.l3 == net::L3::kIpv4) Check(net::VerifyIpv4HeaderChecksum(v));
  }

  void Drain() {
    for (size_t i = 0; i < out.size(); ++i) {
      const auto e = out[i];
      uint8_t copy[moat::proxy::kMaxFrame];
      std::memcpy(copy, e.data, e.len);
      net::PacketView v;
      // Everything the engine generates is a well-formed TCP segment.
      Check(net::ParseFrame(copy, e.len, &v) == net::ParseError::kOk && v.is_tcp);
      if (!strict) continue;
      if (!net::VerifyTcpChecksum(v) && std::getenv("MOAT_FUZZ_DEBUG")) {
        std::fprintf(stderr, "emitted to side %d, len %u, flags 0x%02x, seq %u ack %u, payload %u:\n",
                     static_cast<int>(e.out), e.len, v.tcp_flags(), v.seq().value(), v.ack().value(), v.payload_len);
        for (size_t k = 0; k < e.len; ++k) std::fprintf(stderr, "%02x%s", e.data[k], k % 32 == 31 ? "\n" : "");
        std::fprintf(stderr, "\n");
      }
      Check(net::VerifyTcpChecksum(v));
    }
    out.Clear();
  }

  // Sends `frame[0..len)`; returns the verdict. A forwarded or reflected
  // frame whose input had valid checksums must still have them.
  Verdict Send(Side in) {
    uint8_t before[moat::proxy::kMaxFrame];
    std::memcpy(before, frame, len);
    net::PacketView bv;
    const bool valid_tcp = net::ParseFrame(before, len, &bv) == net::ParseError::kOk &&
                           bv.is_tcp && net::VerifyTcpChecksum(bv) &&
                           (bv.l3 != net::L3::kIpv4 || net::VerifyIpv4HeaderChecksum(bv));
    const Verdict verdict = engine->Process(in, frame, &len, sizeof(frame), now, &out);
    if (valid_tcp && (verdict == Verdict::kForward || verdict == Verdict::kReflect)) {
      CheckFrame(frame, len);
    }
    Drain();
    Check(engine->flow_count() <= kCapacity);
    return verdict;
  }
};

// Starts a segment of `c` in one direction (server :80, default MACs,
// window 1024).
moat::testing::TcpPacket Seg(const Conn& c, bool from_client) {
  const moat::testing::Endpoints e = moat::testing::Endpoints::Make(
      c.v6, c.client, c.cport, c.v6 ? kServer6 : kServer4, 80);
  moat::testing::TcpPacket p = from_client ? e.FromClient() : e.FromServer();
  p.Window(1024);
  return p;
}

// Builds the segment into h.frame; returns its length.
size_t BuildSeg(Harness& h, const moat::testing::TcpPacket& p) {
  h.len = static_cast<uint16_t>(p.BuildInto(h.frame, sizeof(h.frame)));
  return h.len;
}

// Options the fuzzer picks, in TcpOptionWriter's order.
void FuzzOptions(FuzzedDataProvider& fdp, moat::testing::TcpPacket& p, bool syn, uint32_t tsecr) {
  if (syn && fdp.ConsumeBool()) p.Mss(fdp.ConsumeIntegralInRange<uint16_t>(0, 9000));
  if (syn && fdp.ConsumeBool()) p.SackPermitted();
  if (fdp.ConsumeBool()) p.Timestamps(fdp.ConsumeIntegral<uint32_t>(), tsecr);
  if (syn && fdp.ConsumeBool()) p.WindowScale(fdp.ConsumeIntegralInRange<uint8_t>(0, 16));
  if (!syn && fdp.ConsumeBool()) {
    const uint32_t left = fdp.ConsumeIntegral<uint32_t>();
    const uint32_t right = fdp.ConsumeIntegral<uint32_t>();
    p.SackBlocks({left, right});
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider fdp(data, size);
  moat::proxy::EngineConfig cfg;
  cfg.services = *moat::proxy::ParseProtect("198.18.0.2:80,[2001:2::2]:80");
  cfg.flow_capacity = kCapacity;
  cfg.held_slots = kHeld;
  cfg.backend_syn_rto_ms = 100;
  cfg.time_wait_ms = 1000;
  cfg.idle_timeout_s = 30;
  cfg.half_closed_timeout_s = 10;
  cfg.verify_checksums = fdp.ConsumeBool();
  cfg.timestamps = fdp.ConsumeBool();
  std::memset(cfg.secret.bytes, 0x42, sizeof(cfg.secret.bytes));
  Harness h;
  auto e = Engine::Create(cfg, kT0);
  Check(e.ok());
  h.engine = *std::move(e);
  h.strict = cfg.verify_checksums;

  Conn conns[4];
  for (int i = 0; i < 4; ++i) {
    Conn& c = conns[i];
    c.v6 = (i == 3);
    if (c.v6) {
      std::memcpy(c.client, kServer6, 16);
      c.client[15] = 1;
    } else {
      c.client[0] = 198;
      c.client[1] = 18;
      c.client[3] = static_cast<uint8_t>(10 + i);
    }
    c.cport = static_cast<uint16_t>(40000 + (i & 1));  // tuples 0/2 and 1/3 differ only in address
  }

  for (int ops = 0; ops < 96 && fdp.remaining_bytes() > 0; ++ops) {
    Conn& c = conns[fdp.ConsumeIntegralInRange<int>(0, 3)];
    switch (fdp.ConsumeIntegralInRange<int>(0, 8)) {
      case 0: {  // client SYN (maybe with data, as TFO would)
        c.cisn = fdp.PickValueInArray<uint32_t>({0u, 0x7fffffffu, 0xfffffff0u, 12345u}) +
                 fdp.ConsumeIntegralInRange<uint32_t>(0, 64);
        moat::testing::TcpPacket p = Seg(c, true).Seq(c.cisn).Ack(0).Flags(net::kTcpSyn);
        FuzzOptions(fdp, p, true, 0);
        p.Payload(kPayload, fdp.ConsumeBool() ? fdp.ConsumeIntegralInRange<uint16_t>(0, 100) : 0);
        BuildSeg(h, p);
        if (h.Send(Side::kClient) == Verdict::kReflect) {
          net::PacketView v;
          if (net::ParseFrame(h.frame, h.len, &v) == net::ParseError::kOk && v.is_tcp) {
            c.cookie = v.seq().value();
            net::TcpOptions to;
            if (net::ParseTcpOptions(v.tcp(), v.tcp_header_len, &to) == net::ParseError::kOk &&
                to.has_timestamps) {
              c.moat_ts = to.tsval;
            }
          }
          c.c_sent = c.s_sent = 0;
        }
        break;
      }
      case 1: {  // client ACK echoing the cookie (maybe off by a little)
        const uint32_t off = fdp.ConsumeBool() ? 0 : fdp.ConsumeIntegral<uint32_t>() & 3;
        moat::testing::TcpPacket p =
            Seg(c, true).Seq(c.cisn + 1).Ack(c.cookie + 1 + off).Flags(net::kTcpAck);
        FuzzOptions(fdp, p, false, c.moat_ts);
        const uint16_t pl = fdp.ConsumeBool() ? fdp.ConsumeIntegralInRange<uint16_t>(1, 1400) : 0;
        BuildSeg(h, p.Payload(kPayload, pl));
        h.Send(Side::kClient);
        c.c_sent += pl;
        break;
      }
      case 2: {  // backend SYN-ACK for the backend SYN
        c.sisn = fdp.ConsumeIntegral<uint32_t>();
        moat::testing::TcpPacket p =
            Seg(c, false).Seq(c.sisn).Flags(net::kTcpSyn | net::kTcpAck);
        FuzzOptions(fdp, p, true, 0);
        const uint32_t off = fdp.ConsumeBool() ? 0 : fdp.ConsumeIntegralInRange<uint32_t>(1, 3);
        BuildSeg(h, p.Ack(c.cisn + 1 + off));
        h.Send(Side::kServer);
        break;
      }
      case 3: {  // client data / FIN / RST on the spliced flow
        const uint8_t flags = fdp.PickValueInArray<uint8_t>(
            {net::kTcpAck, net::kTcpAck | net::kTcpPsh, net::kTcpAck | net::kTcpFin,
             net::kTcpRst, net::kTcpRst | net::kTcpAck, net::kTcpSyn});
        const int32_t skew = fdp.ConsumeBool() ? 0 : fdp.ConsumeIntegral<int32_t>();
        const uint16_t pl = fdp.ConsumeIntegralInRange<uint16_t>(0, 1400);
        moat::testing::TcpPacket p = Seg(c, true)
                                         .Seq(c.cisn + 1 + c.c_sent + static_cast<uint32_t>(skew))
                                         .Ack(c.cookie + 1 + c.s_sent)
                                         .Flags(flags)
                                         .Payload(kPayload, pl);
        FuzzOptions(fdp, p, false, c.moat_ts);
        BuildSeg(h, p);
        h.Send(Side::kClient);
        c.c_sent += pl + ((flags & net::kTcpFin) ? 1 : 0);
        break;
      }
      case 4: {  // server data / FIN / RST
        const uint8_t flags = fdp.PickValueInArray<uint8_t>(
            {net::kTcpAck, net::kTcpAck | net::kTcpPsh, net::kTcpAck | net::kTcpFin,
             net::kTcpRst, net::kTcpRst | net::kTcpAck, net::kTcpSyn | net::kTcpAck});
        const int32_t skew = fdp.ConsumeBool() ? 0 : fdp.ConsumeIntegral<int32_t>();
        const uint16_t pl = fdp.ConsumeIntegralInRange<uint16_t>(0, 1400);
        moat::testing::TcpPacket p = Seg(c, false)
                                         .Seq(c.sisn + 1 + c.s_sent + static_cast<uint32_t>(skew))
                                         .Ack(c.cisn + 1 + c.c_sent)
                                         .Flags(flags)
                                         .Payload(kPayload, pl);
        FuzzOptions(fdp, p, false, 0);
        BuildSeg(h, p);
        h.Send(Side::kServer);
        c.s_sent += pl + ((flags & net::kTcpFin) ? 1 : 0);
        break;
      }
      case 5: {  // a backend-initiated connection (passthrough), SYN from the server
        moat::testing::TcpPacket p = Seg(c, false).Ack(0).Flags(net::kTcpSyn);
        FuzzOptions(fdp, p, true, 0);
        BuildSeg(h, p.Seq(fdp.ConsumeIntegral<uint32_t>()));
        h.Send(Side::kServer);
        break;
      }
      case 6: {  // raw bytes from either side
        const Side side = fdp.ConsumeBool() ? Side::kClient : Side::kServer;
        std::vector<uint8_t> raw = fdp.ConsumeBytes<uint8_t>(
            fdp.ConsumeIntegralInRange<size_t>(0, 200));
        h.len = static_cast<uint16_t>(raw.size());
        if (!raw.empty()) std::memcpy(h.frame, raw.data(), raw.size());
        h.Send(side);
        break;
      }
      case 7: {  // the last frame again, with a few bytes flipped
        const Side side = fdp.ConsumeBool() ? Side::kClient : Side::kServer;
        if (h.len == 0) break;
        for (int k = fdp.ConsumeIntegralInRange<int>(0, 4); k > 0; --k) {
          const size_t at = fdp.ConsumeIntegralInRange<size_t>(0, h.len - 1);
          h.frame[at] ^= fdp.ConsumeIntegral<uint8_t>();
        }
        h.Send(side);
        break;
      }
      case 8: {  // time passes: timers fire
        h.now += fdp.ConsumeIntegralInRange<uint64_t>(0, 200'000) * 1'000'000;
        while (h.engine->Tick(h.now, &h.out)) h.Drain();
        h.Drain();
        break;
      }
    }
  }

  // Days later nothing may be left: every flow expired (timers chain, e.g.
  // backend SYN retransmits, so keep jumping), every held slot returned.
  for (int day = 0; day < 16 && h.engine->flow_count() != 0; ++day) {
    h.now += 86400 * kSec;
    for (int i = 0; i < 1000 && h.engine->Tick(h.now, &h.out); ++i) h.Drain();
    h.Drain();
  }
  if (h.engine->flow_count() != 0 && std::getenv("MOAT_FUZZ_DEBUG")) {
    const auto& st = h.engine->stats();
    for (size_t i = 0; i < moat::proxy::kNumCounters; ++i) {
      if (st.Load(i)) std::fprintf(stderr, "%s %lu\n", moat::proxy::kCounterNames[i], (unsigned long)st.Load(i));
    }
  }
  Check(h.engine->flow_count() == 0);
  Check(h.engine->held_free() == kHeld);
  return 0;
}
