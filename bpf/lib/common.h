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
	FP_PASS_MALFORMED,       /* truncated or inconsistent headers, IPv4 header checksum wrong */
	FP_PASS_VLAN,            /* 802.1Q/ad tagged: belongs to a VLAN device */
	FP_PASS_L2_NOT_HOST,     /* L2 broadcast/multicast, or not our MAC */
	FP_PASS_L3_SPECIAL,      /* multicast, broadcast, link-local, loopback, martian (route mode: an IPv4 source of this host's) */
	FP_PASS_IP_OPTIONS,      /* IPv4 header with options */
	FP_PASS_FRAGMENT,        /* IPv4 fragment */
	FP_PASS_IPV6_EXT,        /* IPv6 extension header */
	FP_PASS_L4_PROTO,        /* neither TCP, UDP nor ICMP */
	FP_PASS_TTL,             /* TTL/hop limit <= 1: kernel sends time exceeded */
	FP_PASS_LOCAL,           /* addressed to this host */
	FP_PASS_NO_ROUTE,        /* no route, or blackhole/unreachable/prohibit: kernel answers */
	FP_PASS_FWD_DISABLED,    /* forwarding sysctl off on the ingress */
	FP_PASS_FRAG_NEEDED,     /* larger than egress MTU: kernel sends ICMP */
	FP_PASS_NO_NEIGH,        /* next hop unresolved: kernel resolves ARP/ND */
	FP_PASS_EGRESS,          /* egress not managed or cannot take the frame */
	FP_PASS_HAIRPIN,         /* egress == ingress: kernel sends a redirect */
	FP_PASS_FIB_OTHER,       /* any other FIB answer */
	FP_PASS_DISABLED,        /* ingress not (or no longer) configured */
	/* offload mode */
	FP_PASS_ICMP,            /* ICMP: conntrack lookup from BPF cannot serve it */
	FP_PASS_NOT_ACCEPTED,    /* netfilter has not forwarded this flow under the current ruleset */
	FP_PASS_NO_CONNTRACK,    /* no conntrack entry (yet, or any more) */
	FP_PASS_NOT_ESTABLISHED, /* entry not confirmed + established (TCP) / replied (UDP) */
	FP_PASS_CT_HELPER,       /* entry has a helper, expectation or sequence adjustment */
	FP_PASS_TCP_CLOSE,       /* TCP FIN/RST: the kernel must see the teardown */
	FP_PASS_TCP_FLAGS,       /* TCP flags other than an ACK: SYN, none, or a combination conntrack calls invalid */
	FP_PASS_NOT_LIBERAL,     /* TCP entry not yet window-liberal: the daemon makes it so, then the flow is offloaded */
	FP_PASS_REVALIDATE,      /* the flow's periodic pass through the ruleset (changes without events: set timeouts, ...) */
	FP_PASS_WATCHDOG,        /* daemon heartbeat stale: fail open to the kernel */
	FP_PASS_NF_DEVICE_CHAIN, /* an nftables chain on the ingress or egress device (netdev/inet ingress, netdev egress) */
	FP_PASS_FLOW_TABLE_FULL, /* the flow cache could not take the flow (no entry to evict) */
	FP_PASS_FLOW_RACE,       /* the flow was cached and at once evicted by another CPU's fill */
	FP_PASS_BAD_CHECKSUM,    /* TCP/UDP checksum of an offloaded flow's packet wrong (or, XDP, not yet filled in): conntrack calls it invalid */
	/* the daemon holds forwarding back (fp_state.hold_*) */
	FP_PASS_XFRM,            /* IPsec (XFRM) policies exist: the kernel encrypts, or drops, what they match */
	FP_PASS_NF_CHAIN_ORDER,  /* offload mode: a netfilter chain runs outside fastpath's hooks (postrouting after the verdict, prerouting before the arrival note) */
	/* offload mode */
	FP_PASS_NF_REWRITE,      /* the ruleset rewrites this flow's packets (DSCP, TTL, hop limit, flow label) or marks them */
	FP_PASS_MAX,
};

/* Why the datapath dropped a packet itself: only where the kernel, with the
 * state fastpath keeps from it, would not change anything for it either and
 * cannot judge it any more (see docs/offload.md). The Go side reads the
 * names from BTF, as for enum fp_reason. */
enum fp_drop_reason {
	FP_DROP_TCP_OUT_OF_WINDOW = 0, /* FIN/RST outside the window the other side advertised */
	FP_DROP_MAX,
};

/* Why a flow left the cache, the reason of its FP_EV_FLOW_DEL event: the
 * pass reason of its next packet (enum fp_reason), or one of these, which
 * no packet has (their names: internal/datapath/events.go). */
enum fp_del_reason {
	FP_DEL_IDLE = 0x200,       /* no packet for the idle timeout (fp_sweep_idle) */
	FP_DEL_CT_CHANGED = 0x201, /* another program changed the conntrack entry (fp_forget) */
};

/* fp_flow_get reports a drop as FP_DROP_BIT | enum fp_drop_reason. */
#define FP_DROP_BIT 0x100

/* Per-CPU counters of one ingress interface. */
struct fp_stats {
	__u64 fwd_packets;    /* route mode and offloaded flows together */
	__u64 fwd_bytes;
	__u64 flows_added;    /* flow cache fills (offload mode) */
	__u64 flows_removed;  /* flows that left the cache: FIN/RST (both directions), conntrack gone, idle */
	__u64 events_lost;    /* flow events dropped because the ring buffer was full */
	__u64 pass_packets;
	__u64 pass_bytes;
	__u64 pass_reason[FP_PASS_MAX];
	__u64 drop_packets;
	__u64 drop_bytes;
	__u64 drop_reason[FP_DROP_MAX];
};

enum fp_mode {
	FP_MODE_OFF = 0,
	FP_MODE_ROUTE = 1,
	FP_MODE_OFFLOAD = 2,
};

/* Configuration of one managed interface, keyed by ifindex. */
/* fp_iface flags: nftables chains bound to the device, which the kernel
 * runs around tc and which no redirect passes through. */
enum {
	FP_IF_NF_INGRESS = 1, /* packets arriving here go to the kernel */
	FP_IF_NF_EGRESS = 2,  /* never an egress of a redirect */
	FP_IF_GRO_TC = 4,     /* a TC program sits behind native XDP here: XDP hands it bulk TCP to merge (GRO) first */
};

struct fp_iface {
	__u8 mac[6];
	__u16 flags; /* FP_IF_* */
	enum fp_mode mode; /* how packets arriving here are handled */
	__u32 mtu;         /* as egress: larger non-GSO packets go to the kernel */
	__u32 slot;        /* index of its counters in fp_if_stats */
};

/* A flow as it arrives at an ingress: one direction of a conntrack entry. */
struct fp_flow_key {
	__u8 family;
	__u8 proto;
	__be16 sport;
	__be16 dport;
	__u16 pad;
	__be32 saddr[4]; /* IPv4 in [0] */
	__be32 daddr[4];
};

/* Value of fp_accepted: netfilter forwarded the flow direction (the key)
 * from ifindex_in to ifindex_out under ruleset fw_gen. A verdict holds for
 * that path only: rules match on iifname and oifname, so a flow that
 * arrives elsewhere, or that a route moves to another egress, must pass the
 * ruleset again. */
struct fp_verdict {
	__u32 fw_gen;
	__u32 ifindex_in;
	__u32 ifindex_out;
	/* The packet as it left, after every chain before the hook: what the
	 * ruleset rewrote shows against the next packet of the flow. */
	__u32 priority;    /* skb->priority (IPv4: the kernel sets it from the TOS) */
	__be32 flowlabel;  /* IPv6 flow label, network order; IPv4: 0 */
	__u8 tos;          /* IPv4 TOS, IPv6 traffic class */
	__u8 hop;          /* TTL / hop limit, decremented */
	__u8 flags;        /* FP_VERDICT_* */
	__u8 pad;
	/* The same packet as it arrived (fp_nf_arrive, first in PREROUTING):
	 * the packets it vouches for are those that arrive like it. */
	__be32 in_flowlabel;
	__u8 in_dscp;
	__u8 in_ttl;
	__u8 pad2[2];
};

enum {
	FP_VERDICT_MARKED = 1,   /* skb->mark set: policy routing, egress filters and later rules may act on it */
	FP_VERDICT_UNREAD = 2,   /* the headers, or how the packet arrived, could not be read */
};

/* FP_DSCP takes the ECN bits out of a TOS or traffic class: they change
 * packet by packet (TCP marks data ECT but not pure ACKs or retransmits,
 * routers mark CE), so flows are judged by their DSCP. */
#define FP_DSCP(tos) ((__u8)((tos) & 0xfc))

/* How packets arrived, noted by fp_nf_arrive first in PREROUTING for
 * fp_nf_accept last in POSTROUTING: both run for a forwarded packet on one
 * CPU, in one pass through the stack (a batch of packets may go through
 * PREROUTING before the first reaches POSTROUTING). Slots per CPU, by the
 * address of the packet's data buffer; a slot taken by another packet
 * meanwhile reads as unknown, and that verdict vouches for nothing. */
#define FP_ARRIVAL_SLOTS 1024

struct fp_arrival {
	__u64 skb;         /* the packet's: its data buffer's address */
	__be32 flowlabel;
	__u8 dscp;
	__u8 ttl;
	__u8 pad[2];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FP_ARRIVAL_SLOTS);
	__type(key, __u32);
	__type(value, struct fp_arrival);
} fp_arrivals SEC(".maps");

enum fp_flow_flags {
	FP_FLOW_SNAT = 1, /* source address/port rewritten */
	FP_FLOW_DNAT = 2, /* destination address/port rewritten */
	FP_FLOW_REPLY = 4, /* this key is the conntrack reply direction */
	FP_FLOW_PENDING = 8, /* TCP: entry not yet window-liberal, the kernel carries the flow */
};

/* Everything needed to forward a cached flow's packet without lookups. */
struct fp_flow {
	__u64 packets;       /* exact, updated atomically */
	__u64 bytes;
	__u64 created_ns;
	__u64 last_ns;       /* last packet (bpf_ktime_get_ns) */
	__u64 ct_refresh_ns; /* last conntrack timeout refresh */
	__u64 fw_checked_ns; /* when netfilter's verdict was last proven */
	__u32 ifindex_in;
	__u32 ifindex_out;
	__u32 fib_gen;       /* route/neighbour/link state it was built under */
	__u32 fw_gen;        /* ruleset it was accepted under */
	__u32 csum_addr;     /* ones' complement diff of the address rewrite */
	__u16 mtu;           /* path MTU towards the egress */
	__u16 tcp_win;       /* TCP: window field that goes with tcp_ack */
	__u8 smac[6];
	__u8 dmac[6];
	__u8 flags;          /* enum fp_flow_flags */
	__u8 tcp_wscale;     /* TCP: window scale of this direction's windows */
	__u16 priority;      /* skb->priority the kernel's path gave it (TC sets it: egress qdiscs classify by it) */
	__be16 nat_sport;    /* the packet's ports and addresses after NAT */
	__be16 nat_dport;
	__be32 nat_saddr[4];
	__be32 nat_daddr[4];
	/* TCP, host order: the ack of this direction's segment whose ack plus
	 * scaled window reached furthest, i.e. the edge of what the other
	 * direction may send (conntrack's td_maxend for it). */
	__u32 tcp_ack;
	/* The packet's headers as the flow was judged with them
	 * (fp_fill_accepted): one that arrives otherwise is judged again, as
	 * the ruleset may treat it otherwise (fp_flow_headers_as). They take
	 * the entry from 128 bytes to 136. */
	__be32 in_flowlabel; /* IPv6 flow label; IPv4: 0 */
	__u8 in_dscp;        /* TOS / traffic class without the ECN bits */
	__u8 in_ttl;         /* TTL / hop limit */
	__u8 pad2[2];
};

enum fp_event_type {
	FP_EV_FLOW_ADD = 1, /* a flow entered the cache: fastpath forwards it now */
	FP_EV_FLOW_DEL = 2, /* a flow left the cache; reason says why */
	FP_EV_FLOW_PENDING = 3, /* a TCP flow waits for its entry to be made window-liberal */
	FP_EV_GUARD_DROP = 4, /* the guard dropped a packet (sampled); reason is an enum fp_guard_reason */
};

/* Flow events to the daemon. It needs FP_EV_FLOW_ADD to make the conntrack
 * entry tolerate the sequence numbers it no longer sees (see docs). */
struct fp_event {
	__u64 ts_ns;
	__u32 type;        /* enum fp_event_type */
	__u32 reason;      /* FP_EV_FLOW_DEL: enum fp_reason or enum fp_del_reason; FP_EV_GUARD_DROP: enum fp_guard_reason */
	__u32 ifindex_in;
	__u32 ifindex_out;
	struct fp_flow_key key;
	__be32 nat_saddr[4];
	__be32 nat_daddr[4];
	__be16 nat_sport;
	__be16 nat_dport;
	__u8 flags;        /* enum fp_flow_flags */
	__u8 pad[3];
	/* the flow's counters and when it was cached (coarse clock) as the
	 * event left: what an evicted flow carried */
	__u64 packets;
	__u64 bytes;
	__u64 created_ns;
};

enum fp_state_flags {
	/* net.netfilter.nf_conntrack_checksum=0: conntrack does not verify
	 * L4 checksums, so neither does fastpath (default: it does) */
	FP_STATE_NO_CHECKSUM = 1,
};

/* Global state written by the daemon: generations and the heartbeat. */
struct fp_state {
	__u32 fib_gen;            /* bumped on route, neighbour, link changes */
	__u32 fw_gen;             /* bumped on every nftables ruleset change */
	__u64 heartbeat_ns;       /* daemon's last heartbeat (CLOCK_MONOTONIC) */
	__u64 watchdog_ns;        /* heartbeat older than this: stop offloading */
	__u32 tcp_timeout_ms;     /* conntrack timeouts to refresh offloaded flows with */
	__u32 udp_timeout_ms;
	__u32 udp_stream_timeout_ms;
	__u32 route_mtus;         /* entries in fp_mtu4 + fp_mtu6 */
	__u32 flags;              /* enum fp_state_flags */
	__u64 revalidate_ns;      /* each flow passes the ruleset again this often (0: never) */
	/* Forwarding held back by the daemon, for a reason (enum fp_reason; 0:
	 * none): kernel state fastpath cannot follow packet by packet. */
	__u32 hold_all;           /* every packet on every managed interface goes to the kernel */
	__u32 hold_offload;       /* packets arriving on interfaces in offload mode do */
};

/* Routes that carry an MTU metric. bpf_fib_lookup honours only locked route
 * MTUs, while the kernel's forwarding honours every route MTU; the daemon
 * mirrors such routes here so the datapath can do as the kernel does. An
 * LPM match on a less specific MTU route only sends packets to the kernel:
 * the error is on the safe side. */
struct fp_lpm4 {
	__u32 prefixlen;
	__be32 addr;
};

struct fp_lpm6 {
	__u32 prefixlen;
	__be32 addr[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__type(key, struct fp_lpm4);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} fp_mtu4 SEC(".maps");

/* The host's own addresses (and IPv4 broadcast addresses), written by the
 * daemon from the kernel's: IPv6, or IPv4 mapped (::ffff:a.b.c.d). The FIB
 * lookup answers "not forwarded" for them and for a destination with no
 * route at all alike; this tells the two apart. */
struct fp_addr {
	__be32 a[4];
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, struct fp_addr);
	__type(value, __u8);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} fp_local_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 4096);
	__type(key, struct fp_lpm6);
	__type(value, __u32);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} fp_mtu6 SEC(".maps");

/* A full ring drops events (counted in events_lost): the datapath never
 * waits for the daemon. */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 256 * 1024);
} fp_events SEC(".maps");

/* Flow cache; max_entries is set by the daemon from the config. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fp_flow_key);
	__type(value, struct fp_flow);
} fp_flows SEC(".maps");

/* Flows netfilter let through, with the path and the fw_gen they were
 * seen under. Written by the netfilter-hook program: the kernel's verdict,
 * observed. One entry per flow direction, so that forgetting a connection
 * is one delete per direction. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct fp_flow_key);
	__type(value, struct fp_verdict);
} fp_accepted SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_state);
} fp_globals SEC(".maps");

/* Types the daemon decodes that no map declares (events, enums) reach BTF
 * only through a global; bpf2go -type and the daemon read them from there
 * (the pass reason names come from enum fp_reason). Never read here. */
struct fp_btf_types {
	struct fp_event event;
	enum fp_event_type event_type;
	enum fp_flow_flags flow_flags;
	enum fp_reason reason;
	enum fp_drop_reason drop_reason;
	enum fp_del_reason del_reason;
	enum fp_state_flags state_flags;
};
const volatile struct fp_btf_types fp_btf_types;

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, FP_MAX_IFACES);
	__type(key, __u32);
	__type(value, struct fp_iface);
} fp_ifaces SEC(".maps");

/* Per-CPU counters, by the slot the daemon gives each managed interface:
 * an array index found in the fp_ifaces entry the packet path reads anyway,
 * so counting costs no second hash lookup. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
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

static __always_inline const struct fp_state *fp_state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&fp_globals, &zero);
}
