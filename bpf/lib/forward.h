/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Route-mode forwarding: ask the kernel FIB where the packet goes, then
 * rewrite it as the kernel's forwarding path would (MACs, TTL/hop limit,
 * IPv4 header checksum). */
#pragma once
#include "common.h"
#include "csum.h"
#include "parse.h"

#ifndef BPF_FIB_LKUP_RET_NO_SRC_ADDR
#define BPF_FIB_LKUP_RET_NO_SRC_ADDR 9
#endif

/* Fill the FIB query from the parsed packet. tot_len asks the kernel to check
 * the egress MTU; TC leaves it 0 so the kernel checks the skb itself, which
 * is GSO-aware (a GRO aggregate is larger than the MTU but forwardable). */
static __always_inline void fp_fib_params(struct bpf_fib_lookup *fib, const struct fp_pkt *p,
					  __u32 ifindex, int with_tot_len)
{
	__builtin_memset(fib, 0, sizeof(*fib));
	fib->family = p->family;
	fib->l4_protocol = p->l4_proto;
	fib->sport = p->sport;
	fib->dport = p->dport;
	fib->ifindex = ifindex;
	if (with_tot_len)
		fib->tot_len = p->tot_len;
	if (p->family == AF_INET) {
		struct iphdr *iph = p->l3;

		fib->tos = iph->tos;
		fib->ipv4_src = iph->saddr;
		fib->ipv4_dst = iph->daddr;
	} else {
		struct ipv6hdr *ip6h = p->l3;

		fib->flowinfo = *(__be32 *)ip6h & bpf_htonl(0x0FFFFFFF);
		__builtin_memcpy(fib->ipv6_src, &ip6h->saddr, sizeof(fib->ipv6_src));
		__builtin_memcpy(fib->ipv6_dst, &ip6h->daddr, sizeof(fib->ipv6_dst));
	}
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

/* fp_route looks up the FIB and checks the answer is one we may act on. On
 * success fib->ifindex is the egress and fib->smac/dmac the new MACs. */
static __always_inline int fp_route(void *ctx, struct bpf_fib_lookup *fib, const struct fp_pkt *p,
				    __u32 ifindex, int with_tot_len, __u32 *reason)
{
	struct fp_iface *egress;
	int rc;

	fp_fib_params(fib, p, ifindex, with_tot_len);
	rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	if (rc != BPF_FIB_LKUP_RET_SUCCESS) {
		*reason = fp_fib_reason(rc);
		return -1;
	}
	if (fib->ifindex == ifindex) {
		*reason = FP_PASS_HAIRPIN;
		return -1;
	}
	egress = bpf_map_lookup_elem(&fp_ifaces, &fib->ifindex);
	if (!egress) {
		*reason = FP_PASS_EGRESS;
		return -1;
	}
	return 0;
}

/* fp_rewrite applies the forwarding edits in place. Bounds were proven by
 * fp_parse on the same pointers. */
static __always_inline void fp_rewrite(struct fp_pkt *p, const struct bpf_fib_lookup *fib)
{
	__builtin_memcpy(p->eth->h_dest, fib->dmac, ETH_ALEN);
	__builtin_memcpy(p->eth->h_source, fib->smac, ETH_ALEN);

	if (p->family == AF_INET) {
		struct iphdr *iph = p->l3;
		__u16 old = *(__u16 *)&iph->ttl; /* ttl and protocol share a word */

		iph->ttl--;
		iph->check = fp_csum_replace2(iph->check, old, *(__u16 *)&iph->ttl);
	} else {
		struct ipv6hdr *ip6h = p->l3;

		ip6h->hop_limit--;
	}
}
