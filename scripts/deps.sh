#!/usr/bin/env bash
# Installs what fastpath's demo, tests and BPF build need on Debian, only
# when something is missing. Usage: scripts/deps.sh [runtime|build]
#   runtime: tools the demo and the tests drive (ip, nft, ping, ...)
#   build:   runtime + the pinned clang and headers to regenerate BPF objects
set -euo pipefail

want=${1:-runtime}
if [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: run as root (fastpath creates network namespaces and loads BPF programs)" >&2
	exit 1
fi

# command -> Debian package
declare -A pkgs=(
	[ip]=iproute2 [nft]=nftables [iperf3]=iperf3 [ping]=iputils-ping
	[conntrack]=conntrack [ethtool]=ethtool [tcpdump]=tcpdump
	# the package tests (internal/distcheck): build, check the unit, render man pages
	[dpkg-deb]=dpkg [systemd-analyze]=systemd [man]=man-db [setpriv]=util-linux
)
if [ "$want" = build ]; then
	pkgs[clang-19]=clang-19
	pkgs[llvm-strip-19]=llvm-19
fi

missing=()
for cmd in "${!pkgs[@]}"; do
	command -v "$cmd" >/dev/null 2>&1 || missing+=("${pkgs[$cmd]}")
done
if [ "$want" = build ]; then
	[ -f /usr/include/bpf/bpf_helpers.h ] || missing+=(libbpf-dev)
	[ -f /usr/include/linux/bpf.h ] || missing+=(linux-libc-dev)
fi
if [ ${#missing[@]} -eq 0 ]; then
	exit 0
fi
echo "deps.sh: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
