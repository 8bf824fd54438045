#!/bin/bash
# Daemon CPU with the dashboard (docs/dashboard.md, "Cost, measured"): idle
# and with 10k cached flows; 0, 1, 10 pages. As root, after make build:
#   scripts/dashcpu/measure.sh     (about 8 minutes; makes and removes lab dshmb)
set -u
here=$(cd "$(dirname "$0")" && pwd)
fp=${FP:-$here/../../bin/fastpath}
n=dshmb; ns=fp-$n-rtr; dir=/tmp/dash-mb
$fp lab up --name $n > /dev/null 2>&1 || { echo "lab up failed"; exit 1; }
mkdir -p $dir
base='version: 1
interfaces:
  - {name: r0, mode: offload}
  - {name: r1, mode: offload}
api:
  socket: /tmp/dash-mb/api.sock'
echo "$base" > $dir/nodash.yaml
printf '%s\ndashboard:\n  listen: 127.0.0.1:9470\n' "$base" > $dir/dash.yaml
ip netns exec $ns nft -f - <<'EON'
table inet fpm {
	chain post {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "r1" masquerade
	}
}
EON
pages() { # $1 = how many streams to open; prints their pids
	for i in $(seq 1 $1); do ip netns exec $ns curl -sN http://127.0.0.1:9470/events > /dev/null & echo $!; done
}
measure() { # $1 label
	echo "$1: $($here/cpu.sh $dpid 60) %"
}
ip netns exec $ns $fp run -c $dir/nodash.yaml > $dir/d1.out 2>&1 &
dpid=$!; sleep 5
measure "idle, no dashboard configured"
kill -TERM $dpid; wait $dpid
ip netns exec $ns $fp run -c $dir/dash.yaml > $dir/d2.out 2>&1 &
dpid=$!; sleep 5
measure "idle, dashboard, 0 pages"
p1=$(pages 1); sleep 2; measure "idle, dashboard, 1 page"
p9=$(pages 9); sleep 2; measure "idle, dashboard, 10 pages"
kill $p1 $p9
ip netns exec fp-$n-sink timeout 420 python3 $here/echo.py 410 & echo_pid=$!
sleep 1
ip netns exec fp-$n-gen timeout 400 python3 $here/flows.py 198.18.2.1 5000 390 & gen_pid=$!
sleep 15
cnt() { ip netns exec $ns $fp flows --socket $dir/api.sock --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])'; }
echo "flows in cache: $(cnt)"
for i in 1 2 3; do /usr/bin/time -f "fastpath flows --json (all 10k): %e s wall" ip netns exec $ns $fp flows --socket $dir/api.sock --json > /dev/null; done 2>&1
measure "10k flows, dashboard, 0 pages"
p1=$(pages 1); sleep 2; measure "10k flows, dashboard, 1 page"
p9=$(pages 9); sleep 2; measure "10k flows, dashboard, 10 pages"
echo "flows in cache: $(cnt)"
kill $p1 $p9
kill -TERM $dpid; wait $dpid
ip netns exec $ns $fp run -c $dir/nodash.yaml > $dir/d3.out 2>&1 &
dpid=$!; sleep 5
echo "flows in cache: $(ip netns exec $ns $fp flows --socket $dir/api.sock --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["total"])')"
measure "10k flows, no dashboard configured"
kill -TERM $dpid; wait $dpid
kill $gen_pid $echo_pid 2>/dev/null; wait $gen_pid $echo_pid 2>/dev/null
$fp lab down --name $n
ip netns list | grep -q $n && echo "lab left!" || echo "lab removed"
