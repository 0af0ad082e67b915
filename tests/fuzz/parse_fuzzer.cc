// libFuzzer target: the packet parser and option parser on arbitrary bytes.
// Invariants checked beyond "no crash" (ASan/UBSan catch the rest): once
// ParseFrame says kOk, every offset it reports lies inside the frame, so no
// accessor of a parsed view can read out of bounds.

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "moat/net/packet.h"
#include "moat/net/tcp_options.h"

namespace {
void Check(bool ok, int line = __builtin_LINE()) {
  if (!ok) {
    std::fprintf(stderr, "invariant failed at %s:%d\n", __FILE__, line);
    std::abort();
  }
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size > 4096) return 0;
  // The parser works in place on a writable frame; give it an exact-size
  // heap copy so ASan sees any read past the end.
  uint8_t* frame = static_cast<uint8_t*>(std::malloc(size ? size : 1));
  if (size) std::memcpy(frame, data, size);
  moat::net::PacketView v;
  const moat::net::ParseError err =
      moat::net::ParseFrame(frame, static_cast<uint16_t>(size), &v);
  if (err == moat::net::ParseError::kOk && v.l3 != moat::net::L3::kOther) {
    Check(v.l3_offset <= v.l3_end && v.l3_end <= size);
    if (v.is_tcp) {
      Check(v.l4_offset + v.tcp_header_len <= v.l3_end);
      Check(v.payload_offset + v.payload_len == v.l3_end);
      moat::net::TcpOptions o;
      (void)moat::net::ParseTcpOptions(v.tcp(), v.tcp_header_len, &o);
      (void)moat::net::VerifyTcpChecksum(v);
      // Rewrites keep the checksum valid when it was valid.
      const bool was_valid = moat::net::VerifyTcpChecksum(v);
      v.SetSeq(v.seq() + moat::net::SeqDelta(12345));
      v.SetAck(v.ack() + moat::net::SeqDelta(-777));
      v.SetWindow(static_cast<uint16_t>(v.window() ^ 0x5a5a));
      if (was_valid) Check(moat::net::VerifyTcpChecksum(v));
    }
    if (v.l3 == moat::net::L3::kIpv4) (void)moat::net::VerifyIpv4HeaderChecksum(v);
  }
  std::free(frame);
  return 0;
}
