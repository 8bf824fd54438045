/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Route-mode forwarding: ask the kernel FIB where the packet goes, then
 * rewrite it as the kernel's forwarding path would (MACs, TTL/hop limit,
 * IPv4 header checksum). */
#pragma once
#include "common.h"
#include "csum.h"
#include "parse.h"

/* The FIB query, as the kernel routes the packet, in two parts: what the
 * packet itself gives (fp_fib_query: family, protocol, TOS / flow label,
 * ingress, length), and the addresses and ports (fp_fib_addrs): the
 * packet's own in route mode, in offload mode its source and the
 * translated destination (fp_fill_route; 4 words, IPv4 uses the first).
 * l3_len (the L3 length of each packet that will leave, see fp_tc_l3_len
 * for GSO) asks the kernel to check it against the egress MTU. */
static __always_inline void fp_fib_query(struct bpf_fib_lookup *fib, __u8 family, __u8 proto, __u8 tos,
					 __be32 flowinfo, __u32 ifindex, __u32 l3_len)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = family;
	fib->l4_protocol = proto;
	fib->ifindex = ifindex;
	fib->tot_len = l3_len;
	if (family == AF_INET)
		fib->tos = tos;
	else
		fib->flowinfo = flowinfo;
}

/* fp_flowinfo: an IPv6 packet's traffic class and flow label, as the FIB
 * query takes them (IPv4: 0, its TOS is fp_pkt.tos). */
static __always_inline __be32 fp_flowinfo(const struct fp_pkt *p)
{
	return p->family == AF_INET ? 0 : *(__be32 *)p->l3 & bpf_htonl(0x0FFFFFFF);
}

static __always_inline void fp_fib_addrs(struct bpf_fib_lookup *fib, const __be32 *src, const __be32 *dst,
					 __be16 sport, __be16 dport)
{
	fib->sport = sport;
	fib->dport = dport;
	if (fib->family == AF_INET) {
		fib->ipv4_src = src[0];
		fib->ipv4_dst = dst[0];
	} else {
		__builtin_memcpy(fib->ipv6_src, src, sizeof(fib->ipv6_src));
		__builtin_memcpy(fib->ipv6_dst, dst, sizeof(fib->ipv6_dst));
	}
}

/* fp_flowlabel: an IPv6 packet's flow label, network order (IPv4: 0). */
static __always_inline __be32 fp_flowlabel(const struct fp_pkt *p)
{
	return fp_flowinfo(p) & bpf_htonl(0x000fffff);
}


/* fp_tos2priority is rt_tos2priority: the skb->priority the kernel's IPv4
 * forwarding gives a packet from its TOS (ip_tos2prio, net/ipv4/route.c:
 * 0, 2, 6 or 4 by TOS bits 4-1), which egress qdiscs classify by. */
static __always_inline __u32 fp_tos2priority(__u8 tos)
{
	return (0x4444666622220000ULL >> (((tos & 0x1e) >> 1) * 4)) & 0xf;
}

static __always_inline const __be32 *fp_dst_of(const struct fp_pkt *p)
{
	if (p->family == AF_INET)
		return &((struct iphdr *)p->l3)->daddr;
	return ((struct ipv6hdr *)p->l3)->daddr.in6_u.u6_addr32;
}

static __always_inline const __be32 *fp_src_of(const struct fp_pkt *p)
{
	if (p->family == AF_INET)
		return &((struct iphdr *)p->l3)->saddr;
	return ((struct ipv6hdr *)p->l3)->saddr.in6_u.u6_addr32;
}

static __always_inline __u32 fp_fib_reason(int rc)
{
	switch (rc) {
	case BPF_FIB_LKUP_RET_BLACKHOLE:
	case BPF_FIB_LKUP_RET_UNREACHABLE:
	case BPF_FIB_LKUP_RET_PROHIBIT:
		return FP_PASS_NO_ROUTE;
	case BPF_FIB_LKUP_RET_NOT_FWDED:
		return FP_PASS_LOCAL;
	case BPF_FIB_LKUP_RET_FWD_DISABLED:
		return FP_PASS_FWD_DISABLED;
	case BPF_FIB_LKUP_RET_FRAG_NEEDED:
		return FP_PASS_FRAG_NEEDED;
	case BPF_FIB_LKUP_RET_NO_NEIGH:
		return FP_PASS_NO_NEIGH;
	}
	return FP_PASS_FIB_OTHER;
}


/* fp_route_mtu returns the MTU of the most specific route with an MTU
 * metric covering dst, or 0. Only consulted when such routes exist. */
static __always_inline __u32 fp_route_mtu(__u8 family, const __be32 *dst)
{
	const struct fp_state *st = fp_state();
	__u32 *mtu;

	if (!st || !st->route_mtus)
		return 0;
	if (family == AF_INET) {
		struct fp_lpm4 k = { .prefixlen = 32, .addr = dst[0] };

		mtu = bpf_map_lookup_elem(&fp_mtu4, &k);
	} else {
		struct fp_lpm6 k = { .prefixlen = 128 };

		__builtin_memcpy(k.addr, dst, 16);
		mtu = bpf_map_lookup_elem(&fp_mtu6, &k);
	}
	return mtu ? *mtu : 0;
}

/* fp_fib_check turns a FIB answer into a pass reason, also enforcing the
 * route MTU metric the lookup ignores (mtu, from fp_route_mtu before the
 * lookup overwrote the destination with the gateway); *route_mtu is that
 * metric, or 0. */
static __always_inline int fp_fib_check(const struct bpf_fib_lookup *fib, int rc, __u32 mtu, __u32 l3_len,
					__u32 *reason, __u32 *route_mtu)
{
	*route_mtu = 0;
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		*reason = fp_fib_reason(rc);
		/* "not forwarded": local, or no route at all (the destination
		 * is still the packet's: the lookup writes it only on success) */
		if (*reason == FP_PASS_LOCAL) {
			struct fp_addr k = {};

			if (fib->family == AF_INET) {
				k.a[2] = bpf_htonl(0xffff);
				k.a[3] = fib->ipv4_dst;
			} else {
				__builtin_memcpy(k.a, fib->ipv6_dst, 16);
			}
			if (!bpf_map_lookup_elem(&fp_local_addrs, &k))
				*reason = FP_PASS_NO_ROUTE;
		}
		return -1;
	}
	*route_mtu = mtu;
	if (mtu && l3_len > mtu) {
		*reason = FP_PASS_FRAG_NEEDED;
		return -1;
	}
	return 0;
}

/* fp_local_source: an IPv4 packet from one of this host's own addresses
 * (or broadcast ones), which the kernel's input routing drops as a martian
 * (fib_validate_source; only accept_local, off by default, lets it pass).
 * IPv6 has no such check. Offload mode needs none: conntrack never confirms
 * such a flow. */
static __always_inline int fp_local_source(const struct fp_pkt *p)
{
	struct fp_addr k = {};

	if (p->family != AF_INET)
		return 0;
	k.a[2] = bpf_htonl(0xffff);
	k.a[3] = ((struct iphdr *)p->l3)->saddr;
	return bpf_map_lookup_elem(&fp_local_addrs, &k) != NULL;
}

/* fp_route looks up the FIB and checks the answer is one we may act on. On
 * success fib->ifindex is the egress and fib->smac/dmac the new MACs. */
static __always_inline int fp_route(void *ctx, struct bpf_fib_lookup *fib, const struct fp_pkt *p,
				    __u32 ifindex, __u32 l3_len, __u32 *reason)
{
	struct fp_iface *egress;
	__u32 route_mtu, mtu;
	int rc;

	if (fp_local_source(p)) {
		*reason = FP_PASS_L3_SPECIAL;
		return -1;
	}
	fp_fib_query(fib, p->family, p->l4_proto, p->tos, fp_flowinfo(p), ifindex, l3_len);
	fp_fib_addrs(fib, fp_src_of(p), fp_dst_of(p), p->sport, p->dport);
	mtu = fp_route_mtu(fib->family, fib->ipv6_dst); /* ipv4_dst is its first word */
	rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	if (fp_fib_check(fib, rc, mtu, l3_len, reason, &route_mtu))
		return -1;
	if (fib->ifindex == ifindex) {
		*reason = FP_PASS_HAIRPIN;
		return -1;
	}
	egress = bpf_map_lookup_elem(&fp_ifaces, &fib->ifindex);
	if (!egress) {
		*reason = FP_PASS_EGRESS;
		return -1;
	}
	if (egress->flags & FP_IF_NF_EGRESS) {
		*reason = FP_PASS_NF_DEVICE_CHAIN;
		return -1;
	}
	return 0;
}

/* fp_forward_l2l3 makes the edits every forwarded packet gets, as the
 * kernel's forwarding would: MACs, TTL / hop limit, IPv4 header checksum.
 * Bounds were proven by fp_parse on the same pointers. */
static __always_inline void fp_forward_l2l3(struct fp_pkt *p, const __u8 *dmac, const __u8 *smac)
{
	__builtin_memcpy(p->eth->h_dest, dmac, ETH_ALEN);
	__builtin_memcpy(p->eth->h_source, smac, ETH_ALEN);

	if (p->family == AF_INET) {
		struct iphdr *iph = p->l3;
		__u16 old = *(__u16 *)&iph->ttl; /* ttl and protocol share a word */

		iph->ttl--;
		iph->check = fp_csum_replace2(iph->check, old, *(__u16 *)&iph->ttl);
	} else {
		struct ipv6hdr *ip6h = p->l3;

		if ((void *)(ip6h + 1) > p->data_end)
			return; /* proven by fp_parse: for the verifier (see fp_key_of) */
		ip6h->hop_limit--;
	}
}

/* fp_rewrite applies a route-mode forward. */
static __always_inline void fp_rewrite(struct fp_pkt *p, const struct bpf_fib_lookup *fib)
{
	fp_forward_l2l3(p, fib->dmac, fib->smac);
}
