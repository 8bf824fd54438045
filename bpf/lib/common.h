/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Shared definitions for the fastpath datapath: types shared with Go (via
 * bpf2go -type), constants and the maps every program uses. */
#pragma once

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif
#ifndef ETH_P_8021AD
#define ETH_P_8021AD 0x88A8
#endif
#ifndef ETH_P_8021Q
#define ETH_P_8021Q 0x8100
#endif
#ifndef IPPROTO_ICMPV6
#define IPPROTO_ICMPV6 58
#endif

#define FP_MAX_IFACES 1024
#define FP_MAX_VLAN_TAGS 2

/* Why a packet went to the kernel instead of being forwarded here. The Go side
 * reads the names from BTF, so order and names are the counter names. */
enum fp_reason {
	FP_PASS_NOT_IP = 0,      /* ARP, LLDP, anything that is not IPv4/IPv6 */
	FP_PASS_MALFORMED,       /* truncated or inconsistent headers */
	FP_PASS_VLAN,            /* 802.1Q/ad tagged: belongs to a VLAN device */
	FP_PASS_L2_NOT_HOST,     /* L2 broadcast/multicast, or not our MAC */
	FP_PASS_L3_SPECIAL,      /* multicast, broadcast, link-local, loopback, martian */
	FP_PASS_IP_OPTIONS,      /* IPv4 header with options */
	FP_PASS_FRAGMENT,        /* IPv4 fragment */
	FP_PASS_IPV6_EXT,        /* IPv6 extension header */
	FP_PASS_L4_PROTO,        /* neither TCP, UDP nor ICMP */
	FP_PASS_TTL,             /* TTL/hop limit <= 1: kernel sends time exceeded */
	FP_PASS_LOCAL,           /* addressed to this host */
	FP_PASS_NO_ROUTE,        /* blackhole/unreachable/prohibit: kernel answers */
	FP_PASS_FWD_DISABLED,    /* forwarding sysctl off on the ingress */
	FP_PASS_FRAG_NEEDED,     /* larger than egress MTU: kernel sends ICMP */
	FP_PASS_NO_NEIGH,        /* next hop unresolved: kernel resolves ARP/ND */
	FP_PASS_EGRESS,          /* egress not managed or cannot take the frame */
	FP_PASS_HAIRPIN,         /* egress == ingress: kernel sends a redirect */
	FP_PASS_FIB_OTHER,       /* any other FIB answer */
	FP_PASS_DISABLED,        /* ingress not (or no longer) configured */
	FP_PASS_MAX,
};

/* Per-CPU counters of one ingress interface. */
struct fp_stats {
	__u64 fwd_packets;
	__u64 fwd_bytes;
	__u64 pass_packets;
	__u64 pass_bytes;
	__u64 pass_reason[FP_PASS_MAX];
};

enum fp_mode {
	FP_MODE_OFF = 0,
	FP_MODE_ROUTE = 1,
};

/* Configuration of one managed interface, keyed by ifindex. */
struct fp_iface {
	__u8 mac[6];
	__u16 pad;
	enum fp_mode mode; /* how packets arriving here are handled */
};

/* Emits enum fp_reason into BTF, where the daemon reads the counter names
 * (bpf2go -type needs it there too). */
const volatile enum fp_reason fp_pass_max = FP_PASS_MAX;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FP_MAX_IFACES);
	__type(key, __u32);
	__type(value, struct fp_iface);
} fp_ifaces SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, FP_MAX_IFACES);
	__type(key, __u32);
	__type(value, struct fp_stats);
} fp_if_stats SEC(".maps");

/* Egress devices that accept XDP frames (kernel xdp_features NDO_XMIT). */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, FP_MAX_IFACES);
	__type(key, __u32);
	__type(value, __u32);
} fp_tx_ports SEC(".maps");
