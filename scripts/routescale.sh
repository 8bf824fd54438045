#!/bin/sh
# routescale.sh: how much a running fastpath daemon slows a full routing
# table load, and what it costs (docs/scale.md).
#
# In a throw-away network namespace it loads V4 IPv4 /32 routes (spread
# over tables of 131072 each, all inside 198.18.0.0/15) and V6 IPv6 /64
# routes (fd00::/8) with `ip -batch`, deletes them, and does it again with
# the daemon running in the namespace; then it reports the load times, the
# daemon's CPU seconds during the load and while idle, and its peak RSS.
# Last it starts a second daemon with the table loaded (the start reads
# every route once) and reports that start's time, CPU and peak RSS.
#
# usage: sudo scripts/routescale.sh [V4 [V6 [ROUNDS]]]   (default 1048576 262144 1)
# FASTPATH=path uses a built binary instead of building one.
set -eu

V4=${1:-1048576}
V6=${2:-262144}
ROUNDS=${3:-1}
NS=fprs-$(od -An -N3 -tx1 /dev/urandom | tr -d ' \n')
TMP=$(mktemp -d)
PID=
cleanup() {
	if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; wait "$PID" 2>/dev/null || true; fi
	ip netns del "$NS" 2>/dev/null || true
	rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

[ "$(id -u)" = 0 ] || { echo "routescale: needs root (creates a network namespace)" >&2; exit 1; }
if [ -z "${FASTPATH:-}" ]; then
	go build -o "$TMP/fastpath" ./cmd/fastpath
	FASTPATH=$TMP/fastpath
fi

ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add r0 type veth peer name r1
ip -n "$NS" link set r0 up
ip -n "$NS" link set r1 up
ip -n "$NS" addr add 198.18.0.1/30 dev r0
ip -n "$NS" -6 addr add fd00::1/64 dev r0 nodad

# The route files: adds, and the deletes that undo them.
awk -v v4="$V4" -v v6="$V6" -v dir="$TMP" 'BEGIN {
	for (i = 0; i < v4; i++) {
		t = int(i / 131072); j = i % 131072
		dst = sprintf("198.%d.%d.%d/32", 18 + int(j / 65536), int(j / 256) % 256, j % 256)
		tbl = t == 0 ? "main" : 100 + t
		printf "route add %s via 198.18.0.2 dev r0 onlink table %s\n", dst, tbl > dir "/add"
		printf "route del %s table %s\n", dst, tbl > dir "/del"
	}
	for (i = 0; i < v6; i++) {
		dst = sprintf("fd10:0:%x:%x::/64", int(i / 65536), i % 65536)
		printf "route add %s via fd00::2 dev r0\n", dst > dir "/add"
		printf "route del %s\n", dst > dir "/del"
	}
}'

now() { date +%s.%N; }
# cpu PID: user+system seconds of the process so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{ print ($14 + $15) / hz }' "/proc/$1/stat"; }
load() { # prints the seconds ip -batch took, and its CPU seconds (the kernel's work)
	/usr/bin/time -f "%e %U %S" -o "$TMP/time" ip -n "$NS" -batch "$TMP/add"
	awk '{ printf "%s %.2f", $1, $2 + $3 }' "$TMP/time"
}
unload() { ip -n "$NS" -batch "$TMP/del"; }

cat >"$TMP/config.yaml" <<CFG
version: 1
interfaces:
  - name: r0
  - name: r1
api:
  socket: $TMP/fastpath.sock
metrics:
  listen: 127.0.0.1:9610
CFG
start_daemon() { # starts it, waits until it answers (at most 60 s)
	ip netns exec "$NS" "$FASTPATH" run -c "$TMP/config.yaml" >>"$TMP/daemon.log" 2>&1 &
	PID=$!
	i=0
	until ip netns exec "$NS" "$FASTPATH" status --socket "$TMP/fastpath.sock" >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 600 ] || { echo "routescale: the daemon did not start" >&2; cat "$TMP/daemon.log" >&2; exit 1; }
		kill -0 "$PID" || { cat "$TMP/daemon.log" >&2; exit 1; }
		sleep 0.1
	done
}
stop_daemon() {
	kill "$PID"
	wait "$PID" || true
	PID=
}
kb() { awk -v k="$2:" '$1 == k { print int($2 / 1024) }' "/proc/$1/status"; } # MB

echo "routes: $V4 IPv4 /32 + $V6 IPv6 /64, namespace $NS, $ROUNDS rounds (the machine's load varies: compare within a round)"
r=0
while [ $r -lt "$ROUNDS" ]; do
	r=$((r + 1))
	set -- $(load)
	base=$1 basecpu=$2
	unload
	start_daemon
	rss0=$(kb "$PID" VmRSS)
	c0=$(cpu "$PID")
	set -- $(load)
	with=$1 withcpu=$2
	c1=$(cpu "$PID")
	unload
	c2=$(cpu "$PID")
	sleep 10
	c3=$(cpu "$PID")
	echo "round $r: load ${base} s without, ${with} s with the daemon ($(echo "scale=3; $with / $base" | bc)x);" \
		"ip's CPU (the kernel's work) ${basecpu} s without, ${withcpu} s with ($(echo "scale=3; $withcpu / $basecpu" | bc)x);" \
		"daemon CPU $(echo "$c1 - $c0" | bc) s in the load ($(echo "scale=2; 100 * ($c1 - $c0) / $with" | bc)%)," \
		"$(echo "$c2 - $c1" | bc) s in the delete, $(echo "$c3 - $c2" | bc) s idle 10 s;" \
		"RSS $rss0 MB before, peak $(kb "$PID" VmHWM) MB, $(kb "$PID" VmRSS) MB after"
	if command -v curl >/dev/null; then
		ip netns exec "$NS" curl -s http://127.0.0.1:9610/metrics |
			grep -E '^fastpath_(netlink_overruns|route_mtu_resyncs)' | grep -v ' 0$' || true
	fi
	stop_daemon
done
echo "daemon warnings logged: $(grep -c 'level=WARN' "$TMP/daemon.log" || true)"

# A daemon starting on a router whose table is loaded reads it once.
ip -n "$NS" -batch "$TMP/add"
t0=$(now)
start_daemon
t1=$(now)
echo "daemon start with the table loaded: $(echo "$t1 - $t0" | bc) s, CPU $(cpu "$PID") s, peak RSS $(kb "$PID" VmHWM) MB"
stop_daemon
unload
