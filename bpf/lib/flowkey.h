/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* The flow key (struct fp_flow_key), one builder for each place a key comes
 * from: a packet's IP header, a conntrack tuple, and the other direction of
 * a cached flow. */
#pragma once
#include "common.h"
#include "kernel.h"
#include "parse.h"

/* fp_key_of_l3: the key of a packet whose IPv4 or IPv6 header is at l3
 * (bounds proven by the caller), with zero ports: the caller sets them
 * when it has read the L4 header. */
static __always_inline void fp_key_of_l3(struct fp_flow_key *k, __u8 family, __u8 proto, const void *l3,
					 const void *data_end)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->family = family;
	k->proto = proto;
	if (family == AF_INET) {
		const struct iphdr *iph = l3;

		k->saddr[0] = iph->saddr;
		k->daddr[0] = iph->daddr;
	} else {
		const struct ipv6hdr *ip6h = l3;

		/* proven by the caller; again for the verifier, which can pair
		 * an IPv4 proof with this path (the family is reloaded unknown) */
		if ((const void *)(ip6h + 1) > data_end)
			return;
		__builtin_memcpy(k->saddr, &ip6h->saddr, 16);
		__builtin_memcpy(k->daddr, &ip6h->daddr, 16);
	}
}

/* fp_key_of: the key of a packet fp_parse accepted. */
static __always_inline void fp_key_of(struct fp_flow_key *k, const struct fp_pkt *p)
{
	fp_key_of_l3(k, p->family, p->l4_proto, p->l3, p->data_end);
	k->sport = p->sport;
	k->dport = p->dport;
}

/* fp_key_of_tuple: the key of the packets a conntrack tuple describes
 * (TCP or UDP: the tuple's ports are the packets'). */
static __always_inline void fp_key_of_tuple(struct fp_flow_key *k, const struct nf_conntrack_tuple *t)
{
	__builtin_memset(k, 0, sizeof(*k));
	k->family = t->src.l3num;
	k->proto = t->dst.protonum;
	k->sport = t->src.u.all;
	k->dport = t->dst.u.all;
	if (k->family == AF_INET) {
		k->saddr[0] = t->src.u3.all[0];
		k->daddr[0] = t->dst.u3.all[0];
	} else {
		__builtin_memcpy(k->saddr, t->src.u3.all, 16);
		__builtin_memcpy(k->daddr, t->dst.u3.all, 16);
	}
}

/* fp_key_reverse: the key of the other direction of the cached flow f
 * whose key is k: its packets come from where f's go after NAT. */
static __always_inline void fp_key_reverse(struct fp_flow_key *rev, const struct fp_flow_key *k,
					   const struct fp_flow *f)
{
	__builtin_memset(rev, 0, sizeof(*rev));
	rev->family = k->family;
	rev->proto = k->proto;
	rev->sport = f->nat_dport;
	rev->dport = f->nat_sport;
	__builtin_memcpy(rev->saddr, f->nat_daddr, 16);
	__builtin_memcpy(rev->daddr, f->nat_saddr, 16);
}
