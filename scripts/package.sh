#!/usr/bin/env bash
# Installs fastpath into a prefix, or builds its Debian package, from a
# built binary. make install / make deb call it (docs/operations.md).
#
#   scripts/package.sh install BINARY PREFIX [DESTDIR]
#   scripts/package.sh deb BINARY OUTDIR
#
# What is installed, relative to PREFIX (the config under SYSCONFDIR: /etc
# for PREFIX=/usr, else PREFIX/etc; override with SYSCONFDIR=):
#   bin/fastpath
#   lib/systemd/system/fastpath.service      paths rewritten to PREFIX
#   share/man/man1/fastpath*.1.gz            from the command tree
#   share/bash-completion/completions/fastpath
#   share/zsh/vendor-completions/_fastpath
#   share/fish/vendor_completions.d/fastpath.fish
#   share/doc/fastpath/                      README and operator docs
#   SYSCONFDIR/fastpath/fastpath.yaml        example; never overwritten
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
pkg=$here/packaging

die() { echo "package.sh: $*" >&2; exit 1; }

# Temporary directories, removed however the script ends.
tmpdirs=()
trap 'rm -rf "${tmpdirs[@]}"' EXIT
tmpdir() {
	local d
	d=$(mktemp -d)
	tmpdirs+=("$d")
	printf '%s\n' "$d"
}

# Reproducible man page dates and archive times: the last commit's.
if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git -C "$here" log -1 --format=%ct 2>/dev/null || date +%s)
fi
export SOURCE_DATE_EPOCH

# install_tree BINARY PREFIX DESTDIR SYSCONFDIR
install_tree() {
	local bin=$1 prefix=$2 dest=$3 etc=$4
	[ -x "$bin" ] || die "no executable $bin (run make build)"
	local gen
	gen=$(tmpdir)
	"$bin" gen-dist "$gen"

	install -D -m 0755 "$bin" "$dest$prefix/bin/fastpath"

	local unit=$dest$prefix/lib/systemd/system/fastpath.service
	install -d "$(dirname "$unit")"
	sed -e "s|/usr/bin/fastpath|$prefix/bin/fastpath|g" \
	    -e "s|/etc/fastpath/|$etc/fastpath/|g" "$pkg/fastpath.service" >"$unit"
	chmod 0644 "$unit"

	local man=$dest$prefix/share/man/man1
	install -d "$man"
	local page
	for page in "$gen"/man/man1/*.1; do
		gzip -9n <"$page" >"$man/$(basename "$page").gz"
		chmod 0644 "$man/$(basename "$page").gz"
	done

	install -D -m 0644 "$gen/completions/fastpath.bash" "$dest$prefix/share/bash-completion/completions/fastpath"
	install -D -m 0644 "$gen/completions/_fastpath" "$dest$prefix/share/zsh/vendor-completions/_fastpath"
	install -D -m 0644 "$gen/completions/fastpath.fish" "$dest$prefix/share/fish/vendor_completions.d/fastpath.fish"

	local doc=$dest$prefix/share/doc/fastpath
	install -d "$doc"
	install -m 0644 "$here/README.md" "$here"/docs/{operations,config,metrics,counters,api}.md "$doc/"

	local conf=$dest$etc/fastpath/fastpath.yaml
	if [ -e "$conf" ]; then
		echo "package.sh: keeping the existing $conf"
	else
		install -D -m 0644 "$pkg/fastpath.yaml" "$conf"
	fi
}

# debian_version turns the binary's version into one dpkg accepts and
# orders (a native package: no revision, so no '-'):
#   v1.2.3 -> 1.2.3; v1.2.3-rc1 -> 1.2.3~rc1 (before 1.2.3);
#   git describe v1.2.3-4-gabc1234[-dirty] -> 1.2.3+4.gabc1234[.dirty];
#   no tag (a commit hash, "dev") -> 0.0~git<commit time>.<hash>, so that
#   later commits sort later.
debian_version() {
	local v=${1#v}
	if [[ $v =~ ^([0-9]+(\.[0-9]+)*)-([0-9]+)-g([0-9a-f]+)(-dirty)?$ ]]; then
		v=${BASH_REMATCH[1]}+${BASH_REMATCH[3]}.g${BASH_REMATCH[4]}${BASH_REMATCH[5]:+.dirty}
	elif [[ $v =~ ^[0-9]+\.[0-9]+ ]]; then
		v=${v//-/\~}
	else
		v=0.0~git$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d%H%M%S).${v//-/.}
	fi
	printf '%s\n' "$v" | tr -c 'A-Za-z0-9.+~\n' '.'
}

deb_arch() {
	case $1 in
	amd64 | arm64 | riscv64 | ppc64el | s390x) echo "$1" ;;
	386) echo i386 ;;
	arm) echo armhf ;;
	ppc64le) echo ppc64el ;;
	*) die "no Debian architecture for GOARCH $1" ;;
	esac
}

build_deb() {
	local bin=$1 out=$2
	command -v dpkg-deb >/dev/null || die "dpkg-deb not found (apt-get install dpkg)"
	local stage
	stage=$(tmpdir)
	chmod 0755 "$stage" # the archive's ./ entry: dpkg must not see a 0700 root
	install_tree "$bin" /usr "$stage" /etc

	local version arch
	version=$(debian_version "$("$bin" --version | awk '{print $2}')")
	arch=$(deb_arch "$(go env GOARCH 2>/dev/null || dpkg --print-architecture)")

	install -d -m 0755 "$stage/DEBIAN"
	install -m 0755 "$pkg"/deb/{postinst,prerm,postrm} "$stage/DEBIAN/"
	echo /etc/fastpath/fastpath.yaml >"$stage/DEBIAN/conffiles"
	(cd "$stage" && find . -path ./DEBIAN -prune -o -path ./etc -prune -o -type f -printf '%P\0' |
		LC_ALL=C sort -z | xargs -0 md5sum) >"$stage/DEBIAN/md5sums"
	cat >"$stage/DEBIAN/control" <<-CONTROL
	Package: fastpath
	Version: $version
	Architecture: $arch
	Maintainer: fastpath developers <fastpath@fastpath-router.invalid>
	Installed-Size: $(du -sk --exclude=DEBIAN "$stage" | cut -f1)
	Section: net
	Priority: optional
	Suggests: conntrack, nftables
	Homepage: https://github.com/fastpath-router/fastpath
	Description: Linux router fast path in eBPF (XDP and TC)
	 fastpath forwards routed IPv4/IPv6 packets in XDP/TC while following the
	 kernel's FIB, neighbours, netfilter, conntrack/NAT and egress shaping;
	 everything it cannot handle exactly right goes to the kernel unchanged.
	 .
	 The package has the daemon and its command-line client, a systemd unit
	 (not enabled: edit /etc/fastpath/fastpath.yaml first), man pages and
	 bash, zsh and fish completions.
	CONTROL
	mkdir -p "$out"
	local deb=$out/fastpath_${version}_${arch}.deb
	rm -f "$out"/fastpath_*.deb
	dpkg-deb --root-owner-group -Zxz --build "$stage" "$deb" >/dev/null
	echo "$deb"
}

case ${1:-} in
install)
	[ $# -ge 3 ] || die "usage: $0 install BINARY PREFIX [DESTDIR]"
	prefix=${3%/}
	etc=${SYSCONFDIR:-}
	if [ -z "$etc" ]; then
		if [ "$prefix" = /usr ]; then etc=/etc; else etc=$prefix/etc; fi
	fi
	install_tree "$2" "$prefix" "${4:-}" "$etc"
	;;
deb)
	[ $# -eq 3 ] || die "usage: $0 deb BINARY OUTDIR"
	build_deb "$2" "$3"
	;;
*)
	die "usage: $0 install BINARY PREFIX [DESTDIR] | deb BINARY OUTDIR"
	;;
esac
