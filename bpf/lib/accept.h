/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* What netfilter accepted: the netfilter-hook program (fp_nf_accept) runs
 * in POSTROUTING after every other chain (NAT included), so a forwarded
 * packet that reaches it was accepted by the whole ruleset. It records the
 * packet's flow, as the flow looked on arrival (conntrack's tuple of its
 * direction), with its path, under the current ruleset generation
 * (fp_accepted); only such flows are offloaded. */
#pragma once
#include "common.h"
#include "flowkey.h"
#include "kernel.h"
#include <bpf/bpf_core_read.h>

#define NF_ACCEPT 1

/* fp_nf_headers reads a packet's IP header as it is at this hook: TOS or
 * traffic class, TTL or hop limit, IPv6 flow label. -1: unreadable. */
static __always_inline int fp_nf_headers(struct sk_buff *skb, __u8 family, __u8 *tos, __u8 *ttl, __be32 *flowlabel)
{
	unsigned char *l3 = skb->head + skb->network_header;

	if (family == AF_INET) {
		struct iphdr iph;

		if (bpf_probe_read_kernel(&iph, sizeof(iph), l3))
			return -1;
		*tos = iph.tos;
		*ttl = iph.ttl;
		*flowlabel = 0;
		return 0;
	}
	struct ipv6hdr ip6h;

	if (bpf_probe_read_kernel(&ip6h, sizeof(ip6h), l3))
		return -1;
	*tos = (ip6h.priority << 4) | (ip6h.flow_lbl[0] >> 4);
	*ttl = ip6h.hop_limit;
	*flowlabel = *(__be32 *)&ip6h & bpf_htonl(0x000fffff);
	return 0;
}

/* fp_arrival_slot: the packet's slot, by the address of its data buffer
 * (the verifier allows no arithmetic on the skb pointer itself). *id is
 * what the slot must hold to be this packet's. */
static __always_inline struct fp_arrival *fp_arrival_slot(const struct sk_buff *skb, __u64 *id)
{
	__u64 head = (__u64)BPF_CORE_READ(skb, head); /* a scalar, through a probe read */
	__u32 slot = (head >> 8) & (FP_ARRIVAL_SLOTS - 1);

	*id = head;
	return bpf_map_lookup_elem(&fp_arrivals, &slot);
}

/* fp_arrive notes how a packet arrived, before any chain can rewrite it:
 * fp_nf_arrive, first in PREROUTING. */
static __always_inline void fp_arrive(const struct bpf_nf_ctx *ctx, __u8 family)
{
	struct sk_buff *skb = ctx->skb;
	struct fp_arrival *a;
	__u64 id;
	__u8 tos;

	a = fp_arrival_slot(skb, &id);
	if (!a)
		return;
	if (fp_nf_headers(skb, family, &tos, &a->ttl, &a->flowlabel)) {
		a->skb = 0;
		return;
	}
	a->dscp = FP_DSCP(tos);
	a->skb = id;
}

/* fp_accept_headers notes what the ruleset did to the packet: how it
 * arrived (fp_arrive's note) and how it leaves (DSCP, TTL or hop limit,
 * flow label), the mark and the priority. fp_fill_accepted offloads a flow
 * only for packets that arrive as this one did, and only if the ruleset
 * changed nothing of it. */
static __always_inline void fp_accept_headers(struct sk_buff *skb, struct fp_verdict *v, __u8 family)
{
	__u64 id;
	struct fp_arrival *a = fp_arrival_slot(skb, &id);

	v->priority = skb->priority;
	if (skb->mark)
		v->flags |= FP_VERDICT_MARKED;
	if (!a || a->skb != id || fp_nf_headers(skb, family, &v->tos, &v->hop, &v->flowlabel)) {
		v->flags |= FP_VERDICT_UNREAD;
		return;
	}
	v->in_dscp = a->dscp;
	v->in_ttl = a->ttl;
	v->in_flowlabel = a->flowlabel;
	a->skb = 0; /* read: a later packet at this address is noted anew */
}

static __always_inline void fp_accept_record(const struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	unsigned long nfct = skb->_nfct;
	const struct fp_state *st;
	struct nf_conntrack_tuple t;
	struct fp_flow_key k;
	struct fp_verdict v = {}, *seen;
	struct nf_conn *ct;
	unsigned long ctinfo;

	/* skb_iif 0: locally generated, not forwarded. A RELATED packet (an
	 * ICMP error about the flow) carries the flow's entry, but a verdict on
	 * it says nothing of the flow itself. */
	ctinfo = nfct & 7;
	if (!skb->skb_iif || !(nfct & ~7UL) || ctinfo == IP_CT_RELATED || ctinfo == IP_CT_RELATED_REPLY)
		return;
	ct = (struct nf_conn *)(nfct & ~7UL);
	if (ctinfo >= IP_CT_IS_REPLY)
		BPF_CORE_READ_INTO(&t, ct, tuplehash[1].tuple);
	else
		BPF_CORE_READ_INTO(&t, ct, tuplehash[0].tuple);
	fp_key_of_tuple(&k, &t);
	if (k.proto != IPPROTO_TCP && k.proto != IPPROTO_UDP)
		return;
	v.ifindex_in = skb->skb_iif;
	v.ifindex_out = ctx->state->out ? ctx->state->out->ifindex : 0;
	st = fp_state();
	if (!st)
		return;
	v.fw_gen = st->fw_gen;
	fp_accept_headers(skb, &v, k.family);
	/* Write only on change: every kernel-forwarded packet passes here */
	seen = bpf_map_lookup_elem(&fp_accepted, &k);
	if (!seen || seen->fw_gen != v.fw_gen || seen->ifindex_in != v.ifindex_in || seen->ifindex_out != v.ifindex_out ||
	    seen->priority != v.priority || seen->flowlabel != v.flowlabel || seen->tos != v.tos || seen->hop != v.hop ||
	    seen->flags != v.flags || seen->in_flowlabel != v.in_flowlabel || seen->in_dscp != v.in_dscp ||
	    seen->in_ttl != v.in_ttl)
		bpf_map_update_elem(&fp_accepted, &k, &v, BPF_ANY);
}
