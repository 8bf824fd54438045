#!/usr/bin/env bash
# Installs what fastpath's demo, tests and BPF build need on Debian, only
# when something is missing. Usage: scripts/deps.sh [runtime|test|build]
#   runtime: tools the demo and the tests drive (ip, nft, ping, ...)
#   test:    runtime + promtool and headless Chromium (make test; the
#            dashboard's browser tests)
#   build:   runtime + the pinned clang and headers to regenerate BPF objects
#   systemd-check: runtime + systemd-nspawn, debootstrap and bpftool
#            (scripts/systemd-check.sh: the package under a real systemd)
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
	[iptables-legacy]=iptables
	# the package tests (internal/distcheck): build, check the unit, render man pages
	[dpkg-deb]=dpkg [systemd-analyze]=systemd [man]=man-db [setpriv]=util-linux
)
if [ "$want" = test ]; then
	pkgs[chromium]=chromium
	pkgs[chromedriver]=chromium-driver
fi
if [ "$want" = systemd-check ]; then
	pkgs[systemd-nspawn]=systemd-container
	pkgs[debootstrap]=debootstrap
	pkgs[bpftool]=bpftool
fi
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
export DEBIAN_FRONTEND=noninteractive
updated=
if [ ${#missing[@]} -gt 0 ]; then
	echo "deps.sh: installing ${missing[*]}"
	apt-get update -qq
	updated=1
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# promtool, for `promtool check metrics` in the metrics tests. Debian ships
# it only inside the prometheus server package: take the one binary out of
# it rather than install (and start) a Prometheus server.
if [ "$want" = test ] && ! command -v promtool >/dev/null 2>&1; then
	echo "deps.sh: extracting promtool from Debian's prometheus package"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	if (cd "$tmp" && { apt-get download prometheus >/dev/null 2>&1 ||
		{ [ -z "$updated" ] && apt-get update -qq && apt-get download prometheus >/dev/null; }; }) &&
		dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/x"; then
		install -m 0755 "$tmp/x/usr/bin/promtool" /usr/local/bin/promtool
	else
		echo "deps.sh: promtool unavailable; the metrics tests lint with client_golang's testutil only" >&2
	fi
fi
