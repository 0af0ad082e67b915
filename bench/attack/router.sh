# The routed lab for Linux's own SYNPROXY (sourced by bench/attack/run).
# shellcheck shell=bash
#
#   client ns "<name>-c"          router ns "<name>-r"             server ns "<name>-s"
#   eth0 198.18.0.1/24  <-veth->  c0 198.18.0.254/24
#                                 s0 198.18.1.254/24  <-veth->  eth0 198.18.1.2/24
#                                                                     2001:2:0:1::2/64
#
# The router forwards between the two subnets and runs nft synproxy on the
# forward path (DPDK-NOTES.md, "Linux SYNPROXY as a reference"). Its default
# route points back at the client side, so the cookie SYN-ACKs it sends to
# spoofed sources leave on the wire as they would towards the Internet (the
# client namespace drops them: they are not its addresses); moat's go the
# same way. The server's IPv6 address exists only so lab_nginx can listen
# on it; no IPv6 traffic is sent. Everything stays inside 198.18.0.0/15 and
# 2001:2::/48, in namespaces this file creates.
#
# Uses lab.sh's names: LAB_NAME, LAB_C, LAB_S (set by lab_init).

ATK_ROUTER_CLIENT4=198.18.0.254
ATK_ROUTER_SERVER4=198.18.1.254
ATK_ROUTED_SERVER4=198.18.1.2
ATK_ROUTED_SERVER6=2001:2:0:1::2

atk_router_ns() { echo "${LAB_NAME}-r"; }

# atk_router_down: removes the three namespaces (and with them every veth
# and every process inside). Safe to call when nothing exists.
atk_router_down() {
  local ns
  for ns in "$LAB_C" "$(atk_router_ns)" "$LAB_S"; do
    if ip netns list | grep -qw "^$ns"; then
      ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
      ip netns del "$ns" 2>/dev/null || true
    fi
  done
}

# atk_router_up: client ns <-> router ns <-> server ns, routed.
atk_router_up() {
  local r
  r=$(atk_router_ns)
  atk_router_down
  ip netns add "$LAB_C"
  ip netns add "$r"
  ip netns add "$LAB_S"
  local ns
  for ns in "$LAB_C" "$r" "$LAB_S"; do
    ip -n "$ns" link set lo up
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  done
  ip -n "$LAB_C" link add eth0 type veth peer name c0 netns "$r"
  ip -n "$LAB_S" link add eth0 type veth peer name s0 netns "$r"
  # The router does IPv4 only; no router solicitations or ND of its own.
  ip netns exec "$r" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
  ip netns exec "$r" sysctl -qw net.ipv6.conf.c0.disable_ipv6=1 net.ipv6.conf.s0.disable_ipv6=1
  ip -n "$LAB_C" addr add "$LAB_CLIENT4/24" dev eth0
  ip -n "$r" addr add "$ATK_ROUTER_CLIENT4/24" dev c0
  ip -n "$r" addr add "$ATK_ROUTER_SERVER4/24" dev s0
  ip -n "$LAB_S" addr add "$ATK_ROUTED_SERVER4/24" dev eth0
  ip -n "$LAB_S" addr add "$ATK_ROUTED_SERVER6/64" dev eth0 nodad
  ip -n "$LAB_C" link set eth0 up
  ip -n "$r" link set c0 up
  ip -n "$r" link set s0 up
  ip -n "$LAB_S" link set eth0 up
  _lab_quiet_offloads "$LAB_C" eth0
  _lab_quiet_offloads "$r" c0
  _lab_quiet_offloads "$r" s0
  _lab_quiet_offloads "$LAB_S" eth0
  ip -n "$LAB_C" route add default via "$ATK_ROUTER_CLIENT4"
  ip -n "$LAB_S" route add default via "$ATK_ROUTER_SERVER4"
  # Replies to spoofed sources go back out of the client side.
  ip -n "$r" route add default via "$LAB_CLIENT4"
  ip netns exec "$r" sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 \
    net.ipv4.conf.default.rp_filter=0 net.ipv4.conf.all.send_redirects=0
}

# atk_synproxy_rules ts|nots: nft synproxy on the router, as documented in
# DPDK-NOTES.md. "ts" is the documented rule (timestamps on, so the cookie
# can carry window scale and SACK); "nots" leaves out "timestamp" (and so,
# by SYNPROXY's design, window scale and SACK too: without a timestamp
# there is nowhere to encode them).
# Counter "answered": the cookie SYN-ACKs the router sends (locally
# generated, so they pass its output hook).
atk_synproxy_rules() {
  local r opts="mss 1460 wscale 7 timestamp sack-perm"
  r=$(atk_router_ns)
  [ "$1" = nots ] && opts="mss 1460"
  ip netns exec "$r" sysctl -qw net.netfilter.nf_conntrack_tcp_loose=0
  ip netns exec "$r" nft -f - <<EOF
table ip atk {
  counter answered {}
  chain pre {
    type filter hook prerouting priority raw; policy accept;
    tcp dport 80 tcp flags & (syn|ack) == syn notrack
  }
  chain forward_80 {
    type filter hook forward priority filter; policy accept;
    tcp dport 80 ct state invalid,untracked synproxy $opts
    ct state invalid drop
  }
  chain out {
    type filter hook output priority filter; policy accept;
    tcp sport 80 tcp flags & (syn|ack) == syn|ack counter name answered
  }
}
EOF
}

# atk_synproxy_stat: "syn_received cookie_invalid cookie_valid" summed over
# CPUs from the router's /proc/net/stat/synproxy (hex, one line per CPU).
atk_synproxy_stat() {
  local s=0 i=0 v=0 _e rs ri rv _rest
  while read -r _e rs ri rv _rest; do
    case $_e in entries) continue ;; esac
    s=$((s + 16#$rs)) i=$((i + 16#$ri)) v=$((v + 16#$rv))
  done < <(ip netns exec "$(atk_router_ns)" cat /proc/net/stat/synproxy)
  echo "$s $i $v"
}
