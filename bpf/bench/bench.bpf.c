// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
//go:build ignore

/* The benchmark's own programs (`fastpath bench`), none of them part of the
 * router:
 *   bench_gen   the live-frames generator, run with BPF_PROG_RUN in
 *               live-frames mode: stamps each frame with its flow's headers,
 *               XDP_TX. Kernels may refuse live frames (6.18 does: EPERM).
 *   bench_loop  the loop generator, which needs no live frames: on one end
 *   bench_bounce of a veth pair inside gen (bench_bounce on the other end
 *               returns every frame with XDP_TX), each pass stamps the
 *               frame and broadcasts it through a devmap holding its own
 *               device (the frame goes round again) and the router-facing
 *               device (one frame out per pass). A few frames injected with
 *               a packet socket start it; a stop flag, a frame limit or a
 *               deadline ends it.
 *   bench_sink  counts UDP frames (IPv4 and IPv6) and drops them (or,
 *               while flows are being established, sends them back); the
 *               rest passes.
 *   bench_fwd   the plain XDP redirect r0 -> r1, no parsing, no routing: the
 *               upper bound for any XDP router on this path.
 *   bench_tc_fwd the plain TC redirect, one copy on each router interface:
 *               every TCP and UDP packet leaves by the other interface with
 *               the next hop's MACs, nothing else done (no TTL, no routing,
 *               no NAT); the rest (ARP, neighbour discovery) goes to the
 *               stack. The upper bound for any TC router, and for any
 *               router at all on bulk TCP with the hosts' offloads on.
 * Each role loads its own copy of the object, so maps are never shared. */
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "Dual BSD/GPL";

#define BENCH_HDR4_LEN 42 /* Ethernet + IPv4 (no options) + UDP */
#define BENCH_HDR6_LEN 62 /* Ethernet + IPv6 (no extension headers) + UDP */

/* What the generator writes into every frame. Flow i (0 <= i < flows) has
 * source port sport_base + i % sport_span and destination port
 * dport_base + i / sport_span; everything else comes from hdr. */
struct bench_gen_cfg {
	__u8 hdr[BENCH_HDR6_LEN]; /* IPv4 frames use the first BENCH_HDR4_LEN bytes */
	__u16 sport_base; /* host order */
	__u16 dport_base;
	/* 0: UDP checksum 0 ("none"). Else frames carry a UDP checksum: this
	 * is the one's complement sum (folded, host order) of the frame's
	 * pseudo header, UDP header with ports 0 and payload; each frame adds
	 * its ports (and a changed source address). */
	__u16 udp_sum;
	__u32 flows;
	__u32 sport_span;
	/* > 1: flow i comes from one of saddr_span IPv4 sources from hdr's
	 * on, spread by a multiplicative hash (the flood of spoofed sources) */
	__u32 saddr_span;
	/* IPv6 frames, > 1: flow i goes to destination i % daddr_span,
	 * written into bytes 2..5 of hdr's destination (which are 0 there):
	 * one address in each route of a large FIB */
	__u32 daddr_span;
	__u8 ipv6; /* hdr is Ethernet + IPv6 + UDP */
	__u8 pad[3];
};

/* The loop generator's bounds: it emits frames while seq < limit and
 * the clock is before deadline_ns, and stop is 0; a frame past any bound is
 * dropped, so the loop dies out by itself. */
struct bench_loop_ctl {
	__u64 limit;
	__u64 deadline_ns;
	__u32 stop;
	__u32 pad;
};

/* Packets and bytes, per CPU. */
struct bench_count {
	__u64 packets;
	__u64 bytes;
};

enum bench_sink_mode {
	BENCH_SINK_DROP = 0,    /* count, drop */
	BENCH_SINK_REFLECT = 1, /* count, send back with addresses and ports swapped */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_gen_cfg);
} bench_cfg SEC(".maps");

/* The generator's frame counter: the flow index comes from it, and its
 * growth is the generator's own send rate. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} bench_seq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_count);
} bench_counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32); /* enum bench_sink_mode */
} bench_mode SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} bench_tx SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_loop_ctl);
} bench_ctl SEC(".maps");

/* The loop's broadcast targets: the loop device itself and the
 * router-facing device. */
struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, __u32);
} bench_loop_tx SEC(".maps");

/* A UDP destination port (network order; 0: none) the counters let pass to
 * the stack: the latency probe's echo traffic. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u16);
} bench_pass SEC(".maps");

/* Types only Go reads: into BTF for bpf2go -type. */
const volatile enum bench_sink_mode bench_unused_mode;

/* Incremental checksum update for one 16-bit word (RFC 1624). */
static __always_inline __u16 bench_csum_replace(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check + (__u16)~old + new;

	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

/* bench_stamp writes flow seq % flows into the frame and counts it;
 * 0 when the frame cannot be stamped. */
static __always_inline int bench_stamp(struct xdp_md *ctx, __u64 *seq)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct bench_gen_cfg *cfg;
	struct udphdr *uh;
	__u32 zero = 0, i, sum;
	__u16 sport, dport;

	cfg = bpf_map_lookup_elem(&bench_cfg, &zero);
	if (!cfg || !cfg->flows || !cfg->sport_span)
		return 0;
	/* A frame of another size is one of the last cell's, still circling
	 * when the generator was configured anew: stamped with this cell's
	 * IP length it would be malformed. Dropped, the loop is seeded anew.
	 * Pages come back recycled with whatever the router wrote into them
	 * (MACs, TTL, NAT addresses and ports): write the whole header. */
	if (cfg->ipv6) {
		if (data + BENCH_HDR6_LEN > data_end ||
		    data_end - data != sizeof(struct ethhdr) + sizeof(struct ipv6hdr) +
					   bpf_ntohs(*(__be16 *)&cfg->hdr[sizeof(struct ethhdr) + 4]))
			return 0;
		__builtin_memcpy(data, cfg->hdr, BENCH_HDR6_LEN);
		uh = data + sizeof(struct ethhdr) + sizeof(struct ipv6hdr);
	} else {
		if (data + BENCH_HDR4_LEN > data_end ||
		    data_end - data != sizeof(struct ethhdr) + bpf_ntohs(*(__be16 *)&cfg->hdr[sizeof(struct ethhdr) + 2]))
			return 0;
		__builtin_memcpy(data, cfg->hdr, BENCH_HDR4_LEN);
		uh = data + sizeof(struct ethhdr) + sizeof(struct iphdr);
	}
	if ((void *)(uh + 1) > data_end)
		return 0;
	i = *seq % cfg->flows;
	*seq += 1;
	sport = cfg->sport_base + i % cfg->sport_span;
	dport = cfg->dport_base + i / cfg->sport_span;
	uh->source = bpf_htons(sport);
	uh->dest = bpf_htons(dport);
	sum = (__u32)cfg->udp_sum + sport + dport;
	if (cfg->ipv6 && cfg->daddr_span > 1) {
		struct ipv6hdr *ip6 = data + sizeof(struct ethhdr);
		__u32 j = i % cfg->daddr_span;

		if ((void *)(ip6 + 1) > data_end)
			return 0; /* proven above: for the verifier, which reads cfg->ipv6 anew */
		ip6->daddr.in6_u.u6_addr16[1] = bpf_htons(j >> 16);
		ip6->daddr.in6_u.u6_addr16[2] = bpf_htons(j & 0xffff);
		sum += (j >> 16) + (j & 0xffff);
	}
	if (cfg->udp_sum) {
		sum = (sum & 0xffff) + (sum >> 16);
		sum = (sum & 0xffff) + (sum >> 16);
		uh->check = bpf_htons((__u16)~sum);
	}
	if (!cfg->ipv6 && cfg->saddr_span > 1) {
		struct iphdr *iph = data + sizeof(struct ethhdr);
		__be32 old = iph->saddr;
		__be32 new = bpf_htonl(bpf_ntohl(old) + (i * 2654435761u) % cfg->saddr_span);

		iph->saddr = new;
		iph->check = bench_csum_replace(iph->check, old >> 16, new >> 16);
		iph->check = bench_csum_replace(iph->check, old & 0xffff, new & 0xffff);
		if (cfg->udp_sum) {
			uh->check = bench_csum_replace(uh->check, old >> 16, new >> 16);
			uh->check = bench_csum_replace(uh->check, old & 0xffff, new & 0xffff);
		}
	}
	if (cfg->udp_sum && !uh->check)
		uh->check = 0xffff; /* 0 would mean "none" */
	return 1;
}

SEC("xdp")
int bench_gen(struct xdp_md *ctx)
{
	__u32 zero = 0;
	__u64 *seq = bpf_map_lookup_elem(&bench_seq, &zero);

	if (!seq || !bench_stamp(ctx, seq))
		return XDP_ABORTED;
	return XDP_TX;
}

SEC("xdp")
int bench_loop(struct xdp_md *ctx)
{
	struct bench_loop_ctl *ctl;
	__u32 zero = 0;
	__u64 *seq;

	ctl = bpf_map_lookup_elem(&bench_ctl, &zero);
	seq = bpf_map_lookup_elem(&bench_seq, &zero);
	if (!ctl || !seq || ctl->stop || *seq >= ctl->limit)
		return XDP_DROP;
	/* The clock costs a helper call: look at it once every 1024 frames. */
	if (!(*seq & 1023) && bpf_ktime_get_ns() > ctl->deadline_ns)
		return XDP_DROP;
	if (!bench_stamp(ctx, seq))
		return XDP_DROP;
	return bpf_redirect_map(&bench_loop_tx, 0, BPF_F_BROADCAST);
}

SEC("xdp")
int bench_bounce(struct xdp_md *ctx)
{
	return XDP_TX;
}

SEC("xdp")
int bench_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct bench_count *c;
	struct iphdr *iph = NULL;
	struct ipv6hdr *ip6 = NULL;
	struct udphdr *uh;
	__u32 zero = 0, *mode;
	__u16 *pass;

	if ((void *)(eth + 1) > data_end)
		return XDP_PASS;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		iph = (void *)(eth + 1);
		if ((void *)(iph + 1) > data_end || iph->ihl != 5 || iph->protocol != IPPROTO_UDP)
			return XDP_PASS;
		uh = (void *)(iph + 1);
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		ip6 = (void *)(eth + 1);
		if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_UDP)
			return XDP_PASS;
		uh = (void *)(ip6 + 1);
	} else {
		return XDP_PASS; /* ARP and the rest: the stack's business */
	}
	if ((void *)(uh + 1) > data_end)
		return XDP_PASS;
	pass = bpf_map_lookup_elem(&bench_pass, &zero);
	if (pass && *pass && uh->dest == *pass)
		return XDP_PASS;
	c = bpf_map_lookup_elem(&bench_counts, &zero);
	if (c) {
		c->packets++;
		c->bytes += data_end - data;
	}
	mode = bpf_map_lookup_elem(&bench_mode, &zero);
	if (!mode || *mode != BENCH_SINK_REFLECT)
		return XDP_DROP;

	/* Swapping addresses and ports keeps both checksums; the TTL does not
	 * (IPv4's header checksum covers it). */
	__u8 mac[ETH_ALEN];
	__be16 port = uh->source;

	__builtin_memcpy(mac, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, mac, ETH_ALEN);
	uh->source = uh->dest;
	uh->dest = port;
	if (iph) {
		__be32 addr = iph->saddr;
		__u16 old = *(__u16 *)&iph->ttl;

		iph->saddr = iph->daddr;
		iph->daddr = addr;
		iph->ttl = 64;
		iph->check = bench_csum_replace(iph->check, old, *(__u16 *)&iph->ttl);
	} else if (ip6) {
		struct in6_addr addr = ip6->saddr;

		ip6->saddr = ip6->daddr;
		ip6->daddr = addr;
		ip6->hop_limit = 64;
	}
	/* Back out of the same device through the devmap, not XDP_TX: a veth
	 * flushes XDP_TX frames to its peer without waking the peer's NAPI
	 * unless the peer has an XDP program, and rtr's r1 may have none (GRO
	 * only). A devmap redirect's flush always wakes it. */
	return bpf_redirect_map(&bench_tx, 0, XDP_DROP);
}

SEC("xdp")
int bench_fwd(struct xdp_md *ctx)
{
	return bpf_redirect_map(&bench_tx, 0, XDP_DROP);
}

/* Where bench_tc_fwd sends what it forwards: the egress and its MACs. */
struct bench_tc_hop {
	__u32 ifindex;
	__u8 smac[ETH_ALEN];
	__u8 dmac[ETH_ALEN];
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct bench_tc_hop);
} bench_tc_hops SEC(".maps");

SEC("tc")
int bench_tc_fwd(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct ethhdr *eth = data;
	struct bench_tc_hop *hop;
	__u32 zero = 0;
	__u8 proto;

	if ((void *)(eth + 1) > data_end)
		return TC_ACT_OK;
	if (eth->h_proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = (void *)(eth + 1);

		if ((void *)(iph + 1) > data_end)
			return TC_ACT_OK;
		proto = iph->protocol;
	} else if (eth->h_proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = (void *)(eth + 1);

		if ((void *)(ip6 + 1) > data_end)
			return TC_ACT_OK;
		proto = ip6->nexthdr;
	} else {
		return TC_ACT_OK;
	}
	if (proto != IPPROTO_TCP && proto != IPPROTO_UDP)
		return TC_ACT_OK;
	hop = bpf_map_lookup_elem(&bench_tc_hops, &zero);
	if (!hop || !hop->ifindex)
		return TC_ACT_OK;
	__builtin_memcpy(eth->h_source, hop->smac, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, hop->dmac, ETH_ALEN);
	return bpf_redirect(hop->ifindex, 0);
}
