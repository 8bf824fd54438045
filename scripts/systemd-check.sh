#!/usr/bin/env bash
# Installs the Debian package on a minimal Debian booted with systemd as
# PID 1 (systemd-nspawn --boot) and operates the service the way
# docs/operations.md says: edit the example config to two interfaces,
# systemctl enable --now, the CLI, traffic through the router, reload,
# the watchdog, stop/detach, apt remove and purge. make systemd-check runs
# it; docs/operations.md shows a run.
#
#   scripts/systemd-check.sh [DEB]      (as root; DEB defaults to make deb)
#
# The container is a throw-away overlay on a cached debootstrap of the
# host's Debian release (cache below; built once, about a minute, from the
# mirror of the host's apt sources). Its network namespace is private; two
# veth pairs join it to two namespaces of our own, fps-sc-gen and
# fps-sc-sink, which play the hosts on each side of the router. The
# container gets a bpf filesystem of its own at /sys/fs/bpf (systemd
# mounts one at boot on a real host, not in a container), so its pins
# never mix with the host's. Everything is removed on exit, failure
# included; a run left over by a killed one is removed first.
#
# Environment: FASTPATH_SYSTEMD_CHECK_CACHE (default
# /var/cache/fastpath-systemd-check), FASTPATH_SYSTEMD_CHECK_MIRROR
# (default: the host's Debian mirror), FASTPATH_SYSTEMD_CHECK_KEEP=1 (leave
# the container running at the end, for a look; run the script again, or
# with --cleanup, to remove it).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
cache=${FASTPATH_SYSTEMD_CHECK_CACHE:-/var/cache/fastpath-systemd-check}
run=/run/fastpath-systemd-check     # overlay, bpffs, pid file of this run
machine=fps-systemd-check
ns_gen=fps-sc-gen ns_sink=fps-sc-sink
if_r0=fps-sc-r0 if_r1=fps-sc-r1     # the router's interfaces (in the container)
if_g0=fps-sc-g0 if_s0=fps-sc-s0     # their peers in ns_gen and ns_sink
# Packages beyond minbase: systemd as init, the tools an operator uses
# next to fastpath, and nftables for the router's firewall and NAT.
include=systemd,systemd-sysv,dbus,iproute2,nftables,conntrack,procps

t0=$SECONDS
say() { printf '[%3ds] %s\n' $((SECONDS - t0)) "$*"; }
die() { printf '[%3ds] FAIL: %s\n' $((SECONDS - t0)) "$*" >&2; exit 1; }

[ "$(id -u)" -eq 0 ] || die "run as root (it boots a container and creates network namespaces)"

# cleanup removes everything a run makes; safe to call at any point, and
# again. It stops only the systemd-nspawn whose PID this script recorded.
cleanup() {
	set +e
	if [ -f "$run/nspawn.pid" ]; then
		local pid
		pid=$(cat "$run/nspawn.pid")
		if [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = systemd-nspawn ]; then
			kill -TERM "$pid" # the container powers off
			for _ in $(seq 60); do
				kill -0 "$pid" 2>/dev/null || break
				sleep 0.5
			done
			kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
		fi
	fi
	# Traffic tools this script started in ns_gen/ns_sink (see bg).
	if [ -f "$run/bg.pids" ]; then
		local p c
		while read -r p c; do
			[ "$(cat /proc/"$p"/comm 2>/dev/null)" = "$c" ] && kill -TERM "$p"
		done <"$run/bg.pids"
	fi
	ip netns del "$ns_gen" 2>/dev/null
	ip netns del "$ns_sink" 2>/dev/null
	local l
	for l in "$if_r0" "$if_r1" "$if_g0" "$if_s0"; do
		ip link del "$l" 2>/dev/null
	done
	mountpoint -q "$run/root" && umount -R "$run/root"
	mountpoint -q "$run/bpf" && umount "$run/bpf"
	rm -rf "$run" /run/systemd/nspawn/propagate/"$machine"
	return 0
}

if [ "${1:-}" = --cleanup ]; then
	cleanup
	exit 0
fi

for cmd in systemd-nspawn debootstrap bpftool iperf3 ip nsenter ping; do
	command -v "$cmd" >/dev/null || die "$cmd not found: scripts/deps.sh systemd-check installs it"
done

mkdir -p "$cache"
exec 9>"$cache/lock"
flock -n 9 || die "another systemd-check runs (lock $cache/lock)"
cleanup
if [ "${FASTPATH_SYSTEMD_CHECK_KEEP:-}" != 1 ]; then
	trap cleanup EXIT
fi
trap 'exit 130' INT
trap 'exit 143' TERM

# The package: the one given, or make deb's.
deb=${1:-}
if [ -z "$deb" ]; then
	say "make deb"
	make -C "$here" --no-print-directory deb >/dev/null
	deb=$(ls "$here"/dist/fastpath_*.deb)
fi
[ -f "$deb" ] || die "no package $deb"

# The root file system, built once per release and package list.
# shellcheck source=/dev/null
. /etc/os-release
suite=${VERSION_CODENAME:-bookworm}
[ "${ID:-}" = debian ] || suite=bookworm
mirror=${FASTPATH_SYSTEMD_CHECK_MIRROR:-}
if [ -z "$mirror" ]; then
	mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\/debian\)\/\?$/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
	[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $2 ~ /\/debian\/?$/ {print $2; exit}' /etc/apt/sources.list 2>/dev/null)
	[ -n "$mirror" ] || mirror=http://deb.debian.org/debian
fi
rootfs=$cache/rootfs-$suite-$(printf '%s' "$include" | md5sum | cut -c1-8)
if [ ! -x "$rootfs/lib/systemd/systemd" ]; then
	say "debootstrap $suite from $mirror into $rootfs (once; cached)"
	rm -rf "$rootfs.tmp"
	if ! debootstrap --variant=minbase --include="$include" "$suite" "$rootfs.tmp" "$mirror" >"$cache/debootstrap.log" 2>&1; then
		tail -20 "$cache/debootstrap.log" >&2
		die "debootstrap failed (log: $cache/debootstrap.log)"
	fi
	rm -rf "$rootfs.tmp/var/cache/apt/archives/"*.deb
	mv "$rootfs.tmp" "$rootfs"
fi

# A throw-away root: the cached tree under an overlay.
mkdir -p "$run"/{upper,work,root,bpf}
mount -t overlay overlay -o "lowerdir=$rootfs,upperdir=$run/upper,workdir=$run/work" "$run/root"
mount -t bpf bpf "$run/bpf"
root=$run/root
echo fps-router >"$root/etc/hostname"
cp "$deb" "$root/root/"
debname=$(basename "$deb")
# The router's firewall: forward gen -> sink and the replies, masquerade
# towards sink (so the flows carry NAT), as nftables.service loads it.
cat >"$root/etc/nftables.conf" <<EOF
#!/usr/sbin/nft -f
flush ruleset
table inet filter {
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "$if_r0" oifname "$if_r1" accept
	}
}
table ip nat {
	chain postrouting {
		type nat hook postrouting priority srcnat;
		oifname "$if_r1" masquerade
	}
}
EOF
printf 'net.ipv4.ip_forward = 1\n' >"$root/etc/sysctl.d/90-router.conf"
ln -sf /lib/systemd/system/nftables.service "$root/etc/systemd/system/multi-user.target.wants/nftables.service"

say "boot the container (systemd-nspawn --boot)"
# What a container needs that root on a host has: CAP_BPF and CAP_PERFMON
# (not in nspawn's default capability set), the bpf() system call (not in
# its default seccomp filter: without it the daemon fails with "load
# pinned map: operation not permitted"), and a bpf filesystem. No host
# systemd to register with: --register=no --keep-unit.
setsid systemd-nspawn --quiet --boot --directory="$root" --machine="$machine" \
	--register=no --keep-unit --private-network \
	--capability=CAP_BPF,CAP_PERFMON --system-call-filter=bpf \
	--bind="$run/bpf:/sys/fs/bpf" \
	</dev/null >"$run/console.log" 2>&1 9>&- &
echo $! >"$run/nspawn.pid"
nspawn=$!

# The container's PID 1, as the host sees it: the child of systemd-nspawn
# that runs systemd.
leader=
for _ in $(seq 100); do
	leader=$(ps --ppid "$nspawn" -o pid=,comm= | awk '$2 == "systemd" {print $1}')
	[ -n "$leader" ] && break
	kill -0 "$nspawn" 2>/dev/null || { cat "$run/console.log" >&2; die "systemd-nspawn exited"; }
	sleep 0.2
done
[ -n "$leader" ] || die "no systemd in the container after 20 s"

# ct runs a command inside the container (all its namespaces, its root), as
# an operator's root shell there would.
ct() {
	nsenter --target "$leader" --all -- env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin \
		LANG=C.UTF-8 TERM=dumb SYSTEMD_COLORS=0 SYSTEMD_PAGER= "$@"
}
# show echoes a command run in the container, then its output, for the log
# that docs/operations.md quotes.
show() {
	printf '\n# %s\n' "$*"
	ct "$@"
}

# Until systemd answers on its bus, then until the boot is over.
state=
for _ in $(seq 450); do
	state=$(ct systemctl is-system-running 2>/dev/null || true)
	case $state in initializing | starting | "") ;; *) break ;; esac
	sleep 0.2
done
case $state in
running) ;;
degraded)
	ct systemctl --failed --no-pager >&2
	die "the container booted degraded"
	;;
*) die "the container did not boot: $state" ;;
esac
say "booted: $(ct systemctl --version | head -1)"

# bg COMM CMD... starts CMD in the background, recorded for cleanup as a
# process whose name will be COMM; it does not hold the lock.
bg() {
	local comm=$1
	shift
	"$@" 9>&- &
	echo "$! $comm" >>"$run/bg.pids"
}

# The two sides of the router: veth pairs created with one end straight in
# the container's namespace and the other in ours.
ip netns add "$ns_gen"
ip netns add "$ns_sink"
ip link add "$if_r0" netns "$leader" type veth peer name "$if_g0" netns "$ns_gen"
ip link add "$if_r1" netns "$leader" type veth peer name "$if_s0" netns "$ns_sink"
ip -n "$ns_gen" addr add 198.18.0.1/24 dev "$if_g0"
ip -n "$ns_gen" link set "$if_g0" up
ip -n "$ns_gen" route add default via 198.18.0.2
ip -n "$ns_sink" addr add 198.18.1.1/24 dev "$if_s0"
ip -n "$ns_sink" link set "$if_s0" up
ct ip addr add 198.18.0.2/24 dev "$if_r0"
ct ip addr add 198.18.1.2/24 dev "$if_r1"
ct ip link set "$if_r0" up
ct ip link set "$if_r1" up
ip netns exec "$ns_gen" ping -c 2 -W 2 -q 198.18.1.1 >/dev/null || die "no route through the router before fastpath"

# (1) Install, as docs/operations.md says.
say "apt install ./$debname"
out=$(ct sh -c "cd /root && apt install -y ./$debname" 2>&1) || { echo "$out" >&2; die "apt install failed"; }
[[ $out == *"edit /etc/fastpath/fastpath.yaml"* ]] || { echo "$out" >&2; die "postinst did not say what to do next"; }
[ "$(ct systemctl is-enabled fastpath || true)" = disabled ] || die "the package enabled the service before the config was edited"

# (2) The example config, edited to the two interfaces.
ct sed -i -e "s/- name: eth0/- name: $if_r0/" -e "s/- name: eth1/- name: $if_r1/" \
	-e 's/^# metrics:/metrics:/' -e 's/^#   listen: 127.0.0.1:9469 .*/  listen: 127.0.0.1:9469/' \
	/etc/fastpath/fastpath.yaml
show fastpath check-config /etc/fastpath/fastpath.yaml

# (3) Start now and at boot.
say "systemctl enable --now fastpath"
ct systemctl enable --now fastpath 2>&1 || { ct journalctl -u fastpath --no-pager >&2; die "the service did not start"; }
started=$SECONDS
show systemctl status fastpath --no-pager --lines=8 || die "systemctl status: not active"
show fastpath status
st=$(ct fastpath status -j)
for ifn in "$if_r0" "$if_r1"; do
	[[ $st =~ \"name\":\"$ifn\"[^}]*\"state\":\"attached\" ]] || die "$ifn is not attached in fastpath status: $st"
done
progs=$(echo "$st" | grep -o '"program_id":[0-9]*' | cut -d: -f2 | sort -u)
links=$(echo "$st" | grep -o '"link_id":[0-9]*' | cut -d: -f2 | sort -u)
{ [ "$(echo "$progs" | wc -w)" -ge 1 ] && [ "$(echo "$links" | wc -w)" -eq 2 ]; } ||
	die "fastpath status names programs [$progs] and links [$links], want a link per interface"
[ -n "$(ls "$run/bpf/fastpath" 2>/dev/null)" ] || die "nothing pinned under /sys/fs/bpf/fastpath"

# (4) Traffic through the router: a TCP stream from gen to sink, masqueraded.
say "TCP through the router (iperf3, 6 s)"
bg iperf3 ip netns exec "$ns_sink" iperf3 --server --one-off --bind 198.18.1.1 >/dev/null 2>&1
iperf_srv=$!
for _ in $(seq 50); do
	[ -n "$(ip netns exec "$ns_sink" ss -Hltn 'sport = :5201')" ] && break
	sleep 0.1
done
bg iperf3 ip netns exec "$ns_gen" iperf3 --client 198.18.1.1 --time 6 --bitrate 50M >"$run/iperf.log" 2>&1
iperf_cli=$!
# Poll for the data connection in the flow cache, both directions, while
# the stream runs.
flows=
while kill -0 "$iperf_cli" 2>/dev/null; do
	flows=$(ct fastpath flows -j -p tcp --dport 5201)
	[ "$(echo "$flows" | grep -o '"packets":[1-9]' | wc -l)" -ge 2 ] && break
	sleep 0.1
done
show fastpath flows -p tcp --dport 5201
show conntrack -L -p tcp --dport 5201
[[ $flows == *'"nat":"snat"'* ]] || die "no offloaded, masqueraded flow in fastpath flows: $flows"
wait "$iperf_cli" || { cat "$run/iperf.log" >&2; die "iperf3 client failed"; }
wait "$iperf_srv" || true
grep -E 'sender|receiver' "$run/iperf.log"
show fastpath stats "$if_r0"
# 50 Mbit/s for 6 s is 37.5 MB; TC forwards GRO aggregates whole, so
# count bytes, not packets. Most of the stream must be on the fast path.
fwd=$(ct fastpath stats -j "$if_r0" | grep -o '"forwarded":{"packets":[0-9]*,"bytes":[0-9]*' | grep -o '[0-9]*$' | head -1)
[ "${fwd:-0}" -gt 25000000 ] || die "fastpath stats $if_r0: forwarded ${fwd:-no} bytes, want most of the stream's 37.5 MB"
say "forwarded by fastpath on $if_r0: $fwd bytes"
metrics=$(ct bash -c 'exec 3<>/dev/tcp/127.0.0.1/9469; printf "GET /metrics HTTP/1.0\r\n\r\n" >&3; cat <&3' 2>/dev/null || true)
[[ $metrics == *$'\n'fastpath_build_info\{* ]] || die "no fastpath_build_info at 127.0.0.1:9469/metrics"

# (5) Reload: a good file is applied, a bad one refused with the daemon
# running on.
say "systemctl reload"
ct systemctl reload fastpath || die "systemctl reload failed on a valid config"
ct cp /etc/fastpath/fastpath.yaml /root/good.yaml
ct sh -c 'echo "bogus: 1" >>/etc/fastpath/fastpath.yaml'
if ct systemctl reload fastpath 2>/dev/null; then die "systemctl reload accepted an invalid config"; fi
ct cp /root/good.yaml /etc/fastpath/fastpath.yaml
[ "$(ct systemctl is-active fastpath)" = active ] || die "a refused reload stopped the daemon"

# (6) The watchdog: past WatchdogSec the daemon still runs, never
# restarted, and systemd saw a keep-alive within the last half period.
wd=$(ct systemctl show -P WatchdogUSec fastpath)
[ "$wd" = 30s ] || die "WatchdogUSec = $wd, want the unit's 30s"
wait_until=$((started + 36))
say "waiting until $((wait_until - started)) s after start (WatchdogSec=30)"
while [ $SECONDS -lt $wait_until ]; do sleep 1; done
show systemctl show -p ActiveState,SubState,NRestarts,WatchdogUSec,WatchdogTimestamp fastpath
[ "$(ct systemctl show -P NRestarts fastpath)" = 0 ] || die "the service was restarted"
[ "$(ct systemctl show -P ActiveState fastpath)" = active ] || die "the service is not active"
last=$(ct systemctl show -P WatchdogTimestamp fastpath)
[ -n "$last" ] || die "systemd never received WATCHDOG=1"
age=$(($(date +%s) - $(date -d "$last" +%s)))
[ "$age" -le 17 ] || die "the last WATCHDOG=1 is $age s old, want at most half of WatchdogSec (15 s) and a little"
say "last WATCHDOG=1 $age s ago, no restart"

# (7) A hung daemon: stopped with SIGSTOP, systemd's watchdog must abort
# it and restart it; the new daemon adopts the pinned datapath. A drop-in
# shortens the watchdog for this part.
say "hung daemon: watchdog abort and restart (drop-in WatchdogSec=5)"
ct mkdir -p /etc/systemd/system/fastpath.service.d
ct sh -c 'printf "[Service]\nWatchdogSec=5\n" >/etc/systemd/system/fastpath.service.d/watchdog.conf'
ct systemctl daemon-reload
ct systemctl restart fastpath
pid=$(ct systemctl show -P MainPID fastpath)
hung=$(date +%s)
ct kill -STOP "$pid"
deadline=$((SECONDS + 60))
while [ $SECONDS -lt $deadline ]; do
	[ "$(ct systemctl show -P NRestarts fastpath)" = 1 ] && [ "$(ct systemctl show -P ActiveState fastpath)" = active ] && break
	sleep 0.5
done
show journalctl -u fastpath --no-pager -o cat --since=@"$hung" --grep 'atchdog|SIGABRT|Main process|Scheduled restart|adopting|Started'
{ [ "$(ct systemctl show -P NRestarts fastpath)" = 1 ] && [ "$(ct systemctl show -P ActiveState fastpath)" = active ]; } ||
	die "the watchdog did not restart the hung daemon: $(ct systemctl show -p NRestarts,ActiveState,Result fastpath | tr '\n' ' ')"
[ "$(ct systemctl show -P MainPID fastpath)" != "$pid" ] || die "the same daemon still runs"
inv=$(ct systemctl show -P InvocationID fastpath)
case $(ct journalctl -o cat _SYSTEMD_INVOCATION_ID="$inv") in
*"adopting the datapath"*) ;;
*) die "the restarted daemon did not adopt the pinned datapath" ;;
esac
ct rm /etc/systemd/system/fastpath.service.d/watchdog.conf
ct systemctl daemon-reload
ip netns exec "$ns_gen" ping -c 2 -W 2 -q 198.18.1.1 >/dev/null || die "no forwarding after the restart"

# (8) Stop: the datapath stays (--keep-datapath); detach removes it.
say "systemctl stop; fastpath detach"
st=$(ct fastpath status -j)
progs=$(echo "$st" | grep -o '"program_id":[0-9]*' | cut -d: -f2 | sort -u)
links=$(echo "$st" | grep -o '"link_id":[0-9]*' | cut -d: -f2 | sort -u)
ct systemctl stop fastpath
show systemctl status fastpath --no-pager --lines=4 || true
[ "$(ct systemctl show -P Result fastpath)" = success ] || die "the stop did not end cleanly: $(ct systemctl show -P Result fastpath)"
for l in $links; do bpftool link show id "$l" >/dev/null 2>&1 || die "link $l gone after systemctl stop (want it kept)"; done
show fastpath detach
for l in $links; do ! bpftool link show id "$l" >/dev/null 2>&1 || die "link $l still there after fastpath detach"; done
for p in $progs; do ! bpftool prog show id "$p" >/dev/null 2>&1 || die "program $p still loaded after fastpath detach"; done
[[ $(ct ip -d link show "$if_r0") != *prog/xdp* ]] || die "XDP left on $if_r0"
# (maps.debug and progs.debug at the root are the kernel's own.)
pins() { find "$run/bpf/fastpath" -not -type d 2>/dev/null; }
[ -z "$(pins)" ] || die "pins left after fastpath detach: $(pins)"
ip netns exec "$ns_gen" ping -c 2 -W 2 -q 198.18.1.1 >/dev/null || die "the kernel does not forward after detach"

# (9) An interface goes away: the daemon detaches it and says so as a
# warning, which journalctl -p warning finds (the daemon gives journald
# each line's priority).
say "an interface goes away"
ct systemctl start fastpath
ip -n "$ns_sink" link del "$if_s0" # takes its peer, the router's $if_r1, along
deadline=$((SECONDS + 30))
until [[ $(ct fastpath status -j) =~ \"name\":\"$if_r1\"[^}]*\"state\":\"missing\" ]]; do
	[ $SECONDS -lt $deadline ] || die "fastpath status does not show $if_r1 missing"
	sleep 0.2
done
show fastpath status
show journalctl -u fastpath -p warning -o cat --no-pager
[[ $(ct journalctl -u fastpath -p warning -o cat) == *"interface went away"* ]] ||
	die "journalctl -p warning does not show the daemon's warning"

# (10) Remove and purge.
say "apt remove; apt purge"
ct apt remove -y fastpath >/dev/null 2>&1 || die "apt remove failed"
[ "$(ct systemctl is-active fastpath || true)" = inactive ] || die "apt remove left the service running"
[ -z "$(pins)" ] || die "apt remove left pins: $(pins)"
ct test -f /etc/fastpath/fastpath.yaml || die "apt remove deleted the config"
ct apt purge -y fastpath >/dev/null 2>&1 || die "apt purge failed"
if ct test -e /etc/fastpath; then die "apt purge left /etc/fastpath"; fi
if ct systemctl cat fastpath >/dev/null 2>&1; then die "the unit is still known after purge"; fi

say "PASS: systemd $(ct systemctl --version | head -1 | awk '{print $2}'), $debname"
