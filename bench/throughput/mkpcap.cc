// Makes the pcaps the throughput benchmark replays through net_pcap
// (infinite_rx=1), testpmd-style:
//
//   syn_flood.pcap       SYNs from random sources (Linux-like options)
//   est_client.pcap      per flow: the cookie ACK, then client data and
//                        SACK-carrying ACKs with timestamps
//   est_server.pcap      per flow: the backend SYN-ACK, then server data
//   open_client.pcap     per connection: a valid cookie ACK (a new flow
//                        and a backend SYN each time it is replayed)
//   open_server.pcap     per connection: the backend's RST answering that
//                        SYN (RFC 9293 §3.10.7.3: it acks the SYN), so moat
//                        resets the client and frees the flow, and the next
//                        loop of the capture opens the connection again
//   idle.pcap            one ARP request (a port that receives ~nothing)
//
// The cookie ACKs are made with a real Engine as oracle, using the same
// secret file and wall clock moat will use, so they validate in moat for
// the next 60 s (RFC 4987 cookies are time-slotted). Once both halves are
// established, every later loop of the capture is established traffic: the
// repeated ACK and SYN-ACK are one packet per flow per loop. The open
// captures hold a multiple of 32 frames, so that with both ports
// returning full bursts the worker reads 32 ACKs and then the 32 RSTs for
// the same connections in every poll round.
//
// Usage: moat_mkpcap OUT_DIR SECRET_FILE [flows] [packets]

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include "moat/cookie/key_schedule.h"
#include "moat/net/builder.h"
#include "moat/net/packet.h"
#include "moat/net/tcp_options.h"
#include "moat/proxy/config.h"
#include "moat/proxy/engine.h"
#include "testing/packet_builder.h"

namespace {

using moat::net::MacAddr;
using moat::testing::TcpPacket;

constexpr MacAddr kClientMac = {{0x02, 0x00, 0x00, 0x00, 0x00, 0x01}};
constexpr MacAddr kServerMac = {{0x02, 0x00, 0x00, 0x00, 0x00, 0x02}};
constexpr uint8_t kServer[4] = {198, 18, 0, 2};
constexpr uint16_t kPayload = 64;

class PcapWriter {
 public:
  explicit PcapWriter(const std::string& path) : f_(std::fopen(path.c_str(), "wb")) {
    if (f_ == nullptr) {
      std::perror(path.c_str());
      std::exit(1);
    }
    // Classic libpcap header: magic, v2.4, tz 0, sigfigs 0, snaplen, Ethernet.
    const uint32_t hdr[6] = {0xa1b2c3d4, 0x00040002, 0, 0, 65535, 1};
    std::fwrite(hdr, sizeof(hdr), 1, f_);
  }
  ~PcapWriter() { std::fclose(f_); }
  void Write(const uint8_t* data, size_t len) {
    const uint32_t rec[4] = {static_cast<uint32_t>(n_ / 1000000),
                             static_cast<uint32_t>(n_ % 1000000), static_cast<uint32_t>(len),
                             static_cast<uint32_t>(len)};
    ++n_;
    std::fwrite(rec, sizeof(rec), 1, f_);
    std::fwrite(data, len, 1, f_);
  }
  size_t count() const { return n_; }

 private:
  std::FILE* f_;
  size_t n_ = 0;
};

uint64_t RealtimeNs() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

struct Flow {
  uint8_t client[4];
  uint16_t port;
  uint32_t cisn;    // client ISN
  uint32_t cookie;  // moat's ISN towards the client
  uint32_t sisn;    // backend ISN
  uint32_t moat_tsval;
};

// A segment of flow `f` in one direction (server 198.18.0.2:80, window
// 502), to be finished by the caller and built with Build().
TcpPacket Segment(const Flow& f, bool from_client) {
  moat::testing::Endpoints e = moat::testing::Endpoints::Make(false, f.client, f.port, kServer, 80);
  e.client_mac = kClientMac;
  e.server_mac = kServerMac;
  TcpPacket p = from_client ? e.FromClient() : e.FromServer();
  p.Window(502);
  return p;
}

// Linux's SYN options: MSS, SACK-permitted, timestamps, window scale.
TcpPacket& SynOptions(TcpPacket& p, uint32_t tsval) {
  return p.Mss(1460).SackPermitted().Timestamps(tsval, 0).Nop().WindowScale(7);
}

size_t Build(uint8_t* buf, const TcpPacket& p) {
  return p.BuildInto(buf, moat::proxy::kMaxFrame);
}

// Sends flow f's SYN (TSval `tsval`) through the oracle engine and keeps
// the cookie and TSval of its SYN-ACK in f. False if it was not answered.
bool AskCookie(moat::proxy::Engine* engine, uint64_t now, uint32_t tsval, Flow* f) {
  uint8_t buf[moat::proxy::kMaxFrame];
  moat::proxy::Output out;
  TcpPacket syn = Segment(*f, true).Seq(f->cisn).Ack(0).Flags(moat::net::kTcpSyn);
  uint16_t len = static_cast<uint16_t>(Build(buf, SynOptions(syn, tsval)));
  if (engine->Process(moat::proxy::Side::kClient, buf, &len, sizeof(buf), now, &out) !=
      moat::proxy::Verdict::kReflect) {
    return false;
  }
  moat::net::PacketView v;
  moat::net::ParseFrame(buf, len, &v);
  moat::net::TcpOptions to;
  moat::net::ParseTcpOptions(v.tcp(), v.tcp_header_len, &to);
  f->cookie = v.seq().value();
  f->moat_tsval = to.tsval;
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: %s OUT_DIR SECRET_FILE [flows=1024] [packets=65536]\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  const uint32_t nflows = argc > 3 ? static_cast<uint32_t>(std::atoi(argv[3])) : 1024;
  const uint32_t npackets = argc > 4 ? static_cast<uint32_t>(std::atoi(argv[4])) : 65536;
  auto secret = moat::cookie::LoadSecretFile(argv[2]);
  if (!secret.ok()) {
    std::fprintf(stderr, "moat_mkpcap: %s\n", std::string(secret.status().message()).c_str());
    return 1;
  }
  moat::proxy::EngineConfig cfg;
  cfg.services = *moat::proxy::ParseProtect("198.18.0.2:80");
  cfg.secret = *secret;
  cfg.flow_capacity = nflows * 2;
  const uint64_t now = RealtimeNs();
  auto engine = moat::proxy::Engine::Create(cfg, now);
  if (!engine.ok()) {
    std::fprintf(stderr, "moat_mkpcap: %s\n", std::string(engine.status().message()).c_str());
    return 1;
  }
  std::mt19937 rng(20261125);
  uint8_t buf[moat::proxy::kMaxFrame];

  {  // SYN flood from random sources in 198.18.0.0/15.
    PcapWriter pw(dir + "/syn_flood.pcap");
    for (uint32_t i = 0; i < npackets; ++i) {
      Flow f{};
      const uint32_t r = rng();
      f.client[0] = 198;
      f.client[1] = static_cast<uint8_t>(18 + (r & 1));
      f.client[2] = static_cast<uint8_t>(r >> 8);
      f.client[3] = static_cast<uint8_t>(r >> 16);
      f.port = static_cast<uint16_t>(1024 + rng() % 64000);
      TcpPacket p = Segment(f, true).Ack(0).Flags(moat::net::kTcpSyn);
      SynOptions(p, rng());
      pw.Write(buf, Build(buf, p.Seq(rng())));
    }
  }

  // Established flows: handshakes through the oracle engine.
  std::vector<Flow> flows(nflows);
  for (uint32_t i = 0; i < nflows; ++i) {
    Flow& f = flows[i];
    f.client[0] = 198;
    f.client[1] = 19;
    f.client[2] = static_cast<uint8_t>(i >> 8);
    f.client[3] = static_cast<uint8_t>(i);
    f.port = static_cast<uint16_t>(10000 + i % 50000);
    // Near the 2^32 wrap, as real ISNs sometimes are.
    f.cisn = 0xffffff00u - i * 7919u;
    f.sisn = 0x7fffff00u + i * 104729u;
    if (!AskCookie(engine->get(), now, 1000 + i, &f)) {
      std::fprintf(stderr, "moat_mkpcap: the oracle engine did not answer SYN %u\n", i);
      return 1;
    }
  }

  PcapWriter cw(dir + "/est_client.pcap");
  PcapWriter sw(dir + "/est_server.pcap");
  for (const Flow& f : flows) {
    cw.Write(buf, Build(buf, Segment(f, true)
                                 .Seq(f.cisn + 1)
                                 .Ack(f.cookie + 1)
                                 .Flags(moat::net::kTcpAck)
                                 .Nop()
                                 .Nop()
                                 .Timestamps(2000, f.moat_tsval)));
    sw.Write(buf, Build(buf, Segment(f, false)
                                 .Seq(f.sisn)
                                 .Ack(f.cisn + 1)
                                 .Flags(moat::net::kTcpSyn | moat::net::kTcpAck)
                                 .Mss(1460)
                                 .SackPermitted()
                                 .Timestamps(5000, 1000)
                                 .Nop()
                                 .WindowScale(7)));
  }
  // Steady state: client data and SACK ACKs, server data, round-robin.
  for (uint32_t i = 0; i < npackets; ++i) {
    const Flow& f = flows[i % nflows];
    const uint32_t k = i / nflows;
    const uint32_t c_seq = f.cisn + 1 + k * kPayload;
    const uint32_t s_seq = f.sisn + 1 + k * kPayload;
    TcpPacket c = Segment(f, true).Seq(c_seq).Ack(f.cookie + 1 + k * kPayload);
    c.Nop().Nop().Timestamps(2001 + k, f.moat_tsval + k);
    if (i % 2 == 0) {
      c.Flags(moat::net::kTcpAck | moat::net::kTcpPsh).PayloadFill(kPayload, 0);
    } else {
      // A SACK block for server data "received out of order" (RFC 2018).
      c.Flags(moat::net::kTcpAck).Nop().Nop().SackBlocks(
          {f.cookie + 1 + (k + 2) * kPayload, f.cookie + 1 + (k + 3) * kPayload});
    }
    cw.Write(buf, Build(buf, c));
    sw.Write(buf, Build(buf, Segment(f, false)
                                 .Seq(s_seq)
                                 .Ack(c_seq)
                                 .Flags(moat::net::kTcpAck | moat::net::kTcpPsh)
                                 .Nop()
                                 .Nop()
                                 .Timestamps(5001 + k, 2001 + k)
                                 .PayloadFill(kPayload, 0)));
  }

  // Connections opened and refused over and over: the cookie ACK path.
  constexpr uint32_t kOpen = 16384;
  size_t nopen = 0;
  {
    PcapWriter ow(dir + "/open_client.pcap");
    PcapWriter rw(dir + "/open_server.pcap");
    for (uint32_t i = 0; i < kOpen; ++i) {
      Flow f{};
      f.client[0] = 198;
      f.client[1] = 18;
      f.client[2] = static_cast<uint8_t>(128 + (i >> 8));
      f.client[3] = static_cast<uint8_t>(i);
      f.port = static_cast<uint16_t>(20000 + i % 40000);
      f.cisn = 0x10000000u + i * 7919u;
      if (!AskCookie(engine->get(), now, 3000 + i, &f)) {
        std::fprintf(stderr, "moat_mkpcap: the oracle engine did not answer SYN %u\n", i);
        return 1;
      }
      ow.Write(buf, Build(buf, Segment(f, true)
                                   .Seq(f.cisn + 1)
                                   .Ack(f.cookie + 1)
                                   .Flags(moat::net::kTcpAck)
                                   .Nop()
                                   .Nop()
                                   .Timestamps(4000 + i, f.moat_tsval)));
      // moat's SYN to the backend carries the client's ISN (no seq
      // translation client to server), so the RST acks cisn + 1.
      rw.Write(buf, Build(buf, Segment(f, false)
                                   .Seq(0)
                                   .Ack(f.cisn + 1)
                                   .Flags(moat::net::kTcpRst | moat::net::kTcpAck)));
    }
    nopen = ow.count();
  }

  {  // A port that receives (almost) nothing: one broadcast ARP request.
    PcapWriter pw(dir + "/idle.pcap");
    uint8_t arp[60] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0,  0, 0,    0,
                       0x09, 0x08, 0x06, 0x00, 0x01, 0x08, 0x00, 6,  4, 0x00, 0x01,
                       0x02, 0,    0,    0,    0,    0x09, 198,  18, 0, 9,    0,
                       0,    0,    0,    0,    0,    198,  18,   0,  10};
    pw.Write(arp, sizeof(arp));
  }
  std::printf(
      "moat_mkpcap: %u SYNs, %u flows, %zu client / %zu server frames, %zu connections to open "
      "in %s\n",
      npackets, nflows, cw.count(), sw.count(), nopen, dir.c_str());
  return 0;
}
