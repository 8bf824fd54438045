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

/* fp_accept_headers notes what the ruleset may have rewritten of the
 * packet, as it leaves: DSCP/ECN, TTL or hop limit, the IPv6 flow label,
 * the mark and the priority (fp_fill_accepted compares them with the
 * next packet of the flow). */
static __always_inline void fp_accept_headers(struct sk_buff *skb, struct fp_verdict *v, __u8 family)
{
	unsigned char *l3 = skb->head + skb->network_header;

	v->priority = skb->priority;
	if (skb->mark)
		v->flags |= FP_VERDICT_MARKED;
	if (family == AF_INET) {
		struct iphdr iph;

		if (bpf_probe_read_kernel(&iph, sizeof(iph), l3)) {
			v->flags |= FP_VERDICT_UNREAD;
			return;
		}
		v->tos = iph.tos;
		v->hop = iph.ttl;
		return;
	}
	struct ipv6hdr ip6h;

	if (bpf_probe_read_kernel(&ip6h, sizeof(ip6h), l3)) {
		v->flags |= FP_VERDICT_UNREAD;
		return;
	}
	v->tos = (ip6h.priority << 4) | (ip6h.flow_lbl[0] >> 4);
	v->flowlabel = *(__be32 *)&ip6h & bpf_htonl(0x000fffff);
	v->hop = ip6h.hop_limit;
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
	    seen->flags != v.flags)
		bpf_map_update_elem(&fp_accepted, &k, &v, BPF_ANY);
}
