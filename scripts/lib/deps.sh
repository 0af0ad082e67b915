# Shared by scripts/test and scripts/demo: install the Debian 12 packages
# moat needs, quietly and only when something is missing.
# shellcheck shell=bash

MOAT_PACKAGES=(
  build-essential meson ninja-build pkg-config
  libdpdk-dev dpdk dpdk-dev
  libabsl-dev libgflags-dev libgtest-dev libgmock-dev libmicrohttpd-dev
  libbenchmark-dev libbenchmark-tools
  clang libclang-rt-14-dev
  python3-scapy python3-numpy python3-scipy gnuplot-nox
  iproute2 ethtool nftables tcpdump procps psmisc iputils-ping
  nginx-light curl iperf3 hping3
  prometheus python3-prometheus-client
)

moat_install_deps() {
  local missing=()
  local p
  for p in "${MOAT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
      missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$(id -u)" -ne 0 ]; then
    echo "moat: missing packages: ${missing[*]} (run as root to install them)" >&2
    return 1
  fi
  echo "moat: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # nginx-light starts a system nginx on :80 in the root namespace; the lab
  # runs its own in a namespace, so keep the system one out of the way.
  if [[ " ${missing[*]} " == *" nginx-light "* ]]; then
    systemctl disable --now nginx >/dev/null 2>&1 || pkill -x nginx 2>/dev/null || true
  fi
  # Likewise the packaged Prometheus (:9090): tests/lab/metrics.sh starts
  # its own on loopback with a temporary config and data directory.
  if [[ " ${missing[*]} " == *" prometheus "* ]]; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
  fi
}

# DPDK wants hugepages for the lab and for dpdk-proc-info/dumpcap (secondary
# processes). 512 x 2 MiB is plenty for two ports and a few workers.
moat_reserve_hugepages() {
  local want=${1:-512}
  local f=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages
  [ -w "$f" ] || return 0
  if [ "$(cat "$f")" -lt "$want" ]; then
    echo "$want" > "$f" 2>/dev/null || true
  fi
  mountpoint -q /dev/hugepages || { mkdir -p /dev/hugepages; mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null || true; }
}
