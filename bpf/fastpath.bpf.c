// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
//go:build ignore

/* Entry points only: XDP and TC programs over the same library, and the
 * netfilter-hook program that records netfilter's verdicts. */
#include "lib/common.h"
#include "lib/counters.h"
#include "lib/parse.h"
#include "lib/forward.h"
#include "lib/flow.h"
#include "lib/guard.h"
#include <bpf/bpf_core_read.h>

char __license[] SEC("license") = "Dual BSD/GPL";

#define FP_TC_PULL_LEN 128 /* Ethernet + 2 tags + IPv6 + TCP with options */

/* Bulk TCP under native XDP: a redirected frame leaves one by one, each
 * built into an skb at the far end, while the stack's GRO would merge a
 * burst of segments into one skb first. So where a TC program sits behind
 * XDP (FP_IF_GRO_TC), XDP hands every TCP segment of an offloaded flow to
 * the stack uncounted (all of them, so that GRO keeps their order); GRO
 * merges them and the TC program forwards the aggregate. UDP keeps the XDP
 * redirect. (XDP metadata would mark them, but this kernel refuses
 * bpf_xdp_adjust_meta: TC recognises them by the same rule, TCP of a flow
 * already cached.) */
SEC("xdp")
int fp_xdp(struct xdp_md *ctx)
{
	struct fp_pkt p = {
		.data = (void *)(long)ctx->data,
		.data_end = (void *)(long)ctx->data_end,
		.len = ctx->data_end - ctx->data, /* frags-unaware: linear only */
	};
	__u32 ifindex = ctx->ingress_ifindex;
	__u64 bytes = p.data_end - p.data;
	struct bpf_fib_lookup fib;
	__u32 trailer;
	struct fp_iface *in;
	struct fp_flow *f;
	__u32 reason = FP_PASS_FIB_OTHER; /* every path sets its own */
	__u32 slot;

	in = bpf_map_lookup_elem(&fp_ifaces, &ifindex);
	if (!in)
		return XDP_PASS; /* not managed: not counted either */
	slot = in->slot;
	if (fp_guard(ctx, 1, p.data, p.data_end, bytes, 1, ifindex, slot, in->mode))
		return XDP_DROP;
	if (in->mode == FP_MODE_OFF) {
		reason = FP_PASS_DISABLED;
		goto pass;
	}
	if (in->flags & FP_IF_NF_INGRESS) {
		reason = FP_PASS_NF_DEVICE_CHAIN;
		goto pass;
	}
	if (fp_parse(&p, &reason))
		goto pass;
	/* XDP sees frames before the stack's MAC filter: only our unicast MAC */
	if (__builtin_memcmp(p.eth->h_dest, in->mac, ETH_ALEN)) {
		reason = FP_PASS_L2_NOT_HOST;
		goto pass;
	}
	if (in->mode == FP_MODE_OFFLOAD) {
		f = fp_flow_get(ctx, 1, &p, ifindex, slot, p.tot_len, &reason);
		if (!f) {
			if (reason & FP_DROP_BIT) {
				fp_count_drop(slot, reason & ~FP_DROP_BIT, bytes);
				return XDP_DROP;
			}
			goto pass;
		}
		if (p.tot_len > f->mtu) {
			reason = FP_PASS_FRAG_NEEDED;
			goto pass;
		}
		if ((in->flags & FP_IF_GRO_TC) && p.l4_proto == IPPROTO_TCP)
			return XDP_PASS; /* to GRO, then TC, which counts it */
		if (fp_flow_csum_bad(ctx, 1, &p)) {
			reason = FP_PASS_BAD_CHECKSUM;
			goto pass;
		}
		/* As below: the redirect target is checked before any edit */
		if (bpf_redirect_map(&fp_tx_ports, f->ifindex_out, XDP_PASS) != XDP_REDIRECT) {
			reason = FP_PASS_EGRESS;
			goto pass;
		}
		fp_flow_rewrite_l3(&p, f);
		fp_flow_rewrite_l4_xdp(&p, f);
		trailer = p.len - fp_frame_len(&p);
		if (trailer)
			bpf_xdp_adjust_tail(ctx, -(int)trailer); /* last: packet pointers die */
		fp_flow_account(f, bytes - trailer);
		fp_count_fwd(slot, bytes - trailer);
		return XDP_REDIRECT;
	}
	if (fp_route(ctx, &fib, &p, ifindex, p.tot_len, &reason))
		goto pass;
	/* bpf_redirect_map only records the target; the frame leaves after we
	 * return. A devmap miss (egress cannot take XDP frames) yields XDP_PASS
	 * with the frame still untouched. */
	if (bpf_redirect_map(&fp_tx_ports, fib.ifindex, XDP_PASS) != XDP_REDIRECT) {
		reason = FP_PASS_EGRESS;
		goto pass;
	}
	fp_rewrite(&p, &fib);
	trailer = p.len - fp_frame_len(&p);
	if (trailer)
		bpf_xdp_adjust_tail(ctx, -(int)trailer);
	fp_count_fwd(slot, bytes - trailer);
	return XDP_REDIRECT;
pass:
	fp_count_pass(slot, reason, bytes);
	return XDP_PASS;
}

/* A CHECKSUM_COMPLETE skb->csum covers the IPv6 header, whose second word
 * holds the hop limit: the TC paths take that word before their edits and
 * fp_tc_csum_v6 keeps skb->csum true after them. */
static __always_inline __be32 fp_v6_word(const struct fp_pkt *p)
{
	return p->family == AF_INET6 ? *(__be32 *)(p->l3 + 4) : 0;
}

static __always_inline void fp_tc_csum_v6(struct __sk_buff *skb, const struct fp_pkt *p, __be32 old)
{
	if (p->family == AF_INET6)
		bpf_csum_update(skb, bpf_csum_diff(&old, 4, (__be32 *)(p->l3 + 4), 4, 0));
}

/* fp_tc_trim cuts what follows the IP datagram (Ethernet padding, a
 * trailer), as the kernel's receive path does; a GRO aggregate has none.
 * Packet pointers die: it comes last. */
static __always_inline void fp_tc_trim(struct __sk_buff *skb, const struct fp_pkt *p)
{
	__u32 len = fp_frame_len(p);

	if (!skb->gso_size && skb->len > len)
		bpf_skb_change_tail(skb, len, 0);
}

/* fp_tc_flow forwards an offloaded flow's skb. Checksums go through the
 * kernel's helpers, which handle CHECKSUM_PARTIAL (locally generated) and
 * CHECKSUM_COMPLETE skbs; they invalidate packet pointers, so they come
 * last. */
static __always_inline long fp_tc_flow(struct __sk_buff *skb, struct fp_pkt *p, struct fp_flow *f)
{
	__u32 l4 = p->l4 - p->data;
	__u32 check = l4 + fp_l4_check_off(p->l4_proto);
	__u64 mangled = p->l4_proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__be16 *ports = p->l4;
	__be16 old_sport, old_dport;
	int nat = f->flags & (FP_FLOW_SNAT | FP_FLOW_DNAT);
	__be32 old_v6word;

	if ((void *)(ports + 2) > p->data_end)
		return TC_ACT_OK;
	old_sport = ports[0];
	old_dport = ports[1];
	old_v6word = fp_v6_word(p);
	fp_flow_rewrite_l3(p, f);
	fp_tc_csum_v6(skb, p, old_v6word);
	if (nat) {
		ports[0] = f->nat_sport;
		ports[1] = f->nat_dport;
		/* BPF_F_IPV6 keeps a CHECKSUM_COMPLETE skb->csum right for IPv6
		 * addresses; kernels before it reject the flag, and then the
		 * update without it is the best they offer. */
		if (p->family != AF_INET6 ||
		    bpf_l4_csum_replace(skb, check, 0, f->csum_addr, BPF_F_PSEUDO_HDR | BPF_F_IPV6 | mangled))
			bpf_l4_csum_replace(skb, check, 0, f->csum_addr, BPF_F_PSEUDO_HDR | mangled);
		bpf_l4_csum_replace(skb, check, old_sport, f->nat_sport, 2 | mangled);
		bpf_l4_csum_replace(skb, check, old_dport, f->nat_dport, 2 | mangled);
	}
	fp_tc_trim(skb, p);
	return bpf_redirect(f->ifindex_out, 0);
}

/* fp_tc_l3_len: the L3 length of each packet that will leave. A GSO skb
 * (a GRO aggregate) leaves as segments of gso_size payload, each with the
 * headers; the kernel's own forwarding checks those against the MTU. */
static __always_inline __u32 fp_tc_l3_len(struct __sk_buff *skb, const struct fp_pkt *p)
{
	if (!skb->gso_size)
		return p->tot_len;
	return (__u32)(p->l4 - p->l3) + p->l4_hdr_len + skb->gso_size;
}

SEC("tc")
int fp_tc(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	__u64 bytes = skb->len;
	struct bpf_fib_lookup fib;
	struct fp_iface *in;
	struct fp_flow *f;
	struct fp_pkt p;
	__u32 reason = FP_PASS_FIB_OTHER, l3_len, slot; /* every path sets its own reason */
	__be32 old_v6word;
	int behind;

	in = bpf_map_lookup_elem(&fp_ifaces, &ifindex);
	if (!in)
		return TC_ACT_OK; /* not managed: not counted either */
	slot = in->slot;
	/* Behind native XDP (FP_IF_GRO_TC), XDP guarded and judged every
	 * packet, and counted all but the TCP of cached flows it handed over:
	 * only that is this program's, found by XDP's rule (TCP whose flow is
	 * cached and current; no fill here, which would skip XDP's egress
	 * rule); what it does not forward, and everything else, goes on to the
	 * next program or the stack uncounted. */
	behind = in->flags & FP_IF_GRO_TC;
	if (!behind && fp_guard_tc(skb, ifindex, slot, in->mode))
		return TC_ACT_SHOT;
	if (in->mode == FP_MODE_OFF) {
		reason = FP_PASS_DISABLED;
		goto pass;
	}
	if (in->flags & FP_IF_NF_INGRESS) {
		reason = FP_PASS_NF_DEVICE_CHAIN;
		goto pass;
	}
	/* The stack already classified the frame by MAC */
	if (skb->pkt_type != 0 /* PACKET_HOST */) {
		reason = FP_PASS_L2_NOT_HOST;
		goto pass;
	}
	/* Headers may sit in paged data: make them linear before parsing */
	__builtin_memset(&p, 0, sizeof(p));
	p.len = skb->len;
	p.data = (void *)(long)skb->data;
	p.data_end = (void *)(long)skb->data_end;
	if (p.data + FP_TC_PULL_LEN > p.data_end && p.data_end - p.data < skb->len) {
		bpf_skb_pull_data(skb, skb->len < FP_TC_PULL_LEN ? skb->len : FP_TC_PULL_LEN);
		p.data = (void *)(long)skb->data;
		p.data_end = (void *)(long)skb->data_end;
	}
	if (fp_parse(&p, &reason))
		goto pass;
	/* A tag the driver or stack moved into metadata is invisible to the
	 * parser; the frame still belongs to a VLAN device. */
	if (skb->vlan_present) {
		reason = FP_PASS_VLAN;
		goto pass;
	}
	l3_len = fp_tc_l3_len(skb, &p);
	if (behind && (in->mode != FP_MODE_OFFLOAD || p.l4_proto != IPPROTO_TCP))
		return TC_ACT_UNSPEC;
	if (in->mode == FP_MODE_OFFLOAD) {
		if (behind && !fp_flow_current(&p, ifindex))
			return TC_ACT_UNSPEC;
		f = fp_flow_get(skb, 0, &p, ifindex, slot, l3_len, &reason);
		if (!f) {
			if (reason & FP_DROP_BIT) {
				fp_count_drop(slot, reason & ~FP_DROP_BIT, bytes);
				return TC_ACT_SHOT;
			}
			goto pass;
		}
		if (l3_len > f->mtu) {
			reason = FP_PASS_FRAG_NEEDED;
			goto pass;
		}
		if (fp_flow_csum_bad(skb, 0, &p)) {
			reason = FP_PASS_BAD_CHECKSUM;
			goto pass;
		}
		if (!skb->gso_size)
			bytes = fp_frame_len(&p);
		fp_flow_account(f, bytes);
		fp_count_fwd(slot, bytes);
		return fp_tc_flow(skb, &p, f);
	}
	if (fp_route(skb, &fib, &p, ifindex, l3_len, &reason))
		goto pass;
	old_v6word = fp_v6_word(&p);
	fp_rewrite(&p, &fib);
	fp_tc_csum_v6(skb, &p, old_v6word);
	if (!skb->gso_size)
		bytes = fp_frame_len(&p);
	fp_count_fwd(slot, bytes);
	fp_tc_trim(skb, &p);
	return bpf_redirect(fib.ifindex, 0);
pass:
	if (behind)
		return TC_ACT_UNSPEC; /* XDP counted it */
	fp_count_pass(slot, reason, bytes);
	return TC_ACT_OK;
}

#define NF_ACCEPT 1

/* fp_nf_accept runs in netfilter's POSTROUTING hook after every other
 * chain (NAT included): a forwarded packet that reaches it was accepted by
 * the whole ruleset. It records the packet's flow, as the flow looked on
 * arrival (conntrack's tuple of its direction), under the current ruleset
 * generation; only such flows are offloaded. */
SEC("netfilter")
int fp_nf_accept(struct bpf_nf_ctx *ctx)
{
	struct sk_buff *skb = ctx->skb;
	unsigned long nfct = skb->_nfct;
	const struct fp_state *st;
	struct nf_conntrack_tuple t;
	struct fp_flow_key key = {}, *k = &key;
	struct fp_verdict v = {}, *seen;
	struct nf_conn *ct;
	unsigned long ctinfo;

	/* skb_iif 0: locally generated, not forwarded. A RELATED packet (an
	 * ICMP error about the flow) carries the flow's entry, but a verdict on
	 * it says nothing of the flow itself. */
	ctinfo = nfct & 7;
	if (!skb->skb_iif || !(nfct & ~7UL) || ctinfo == IP_CT_RELATED || ctinfo == IP_CT_RELATED_REPLY)
		return NF_ACCEPT;
	ct = (struct nf_conn *)(nfct & ~7UL);
	if (ctinfo >= IP_CT_IS_REPLY)
		BPF_CORE_READ_INTO(&t, ct, tuplehash[1].tuple);
	else
		BPF_CORE_READ_INTO(&t, ct, tuplehash[0].tuple);
	k->proto = BPF_CORE_READ(&t, dst.protonum);
	if (k->proto != IPPROTO_TCP && k->proto != IPPROTO_UDP)
		return NF_ACCEPT;
	k->family = BPF_CORE_READ(&t, src.l3num);
	k->sport = t.src.u.all;
	k->dport = t.dst.u.all;
	if (k->family == AF_INET) {
		k->saddr[0] = t.src.u3.all[0];
		k->daddr[0] = t.dst.u3.all[0];
	} else {
		__builtin_memcpy(k->saddr, t.src.u3.all, 16);
		__builtin_memcpy(k->daddr, t.dst.u3.all, 16);
	}
	v.ifindex_in = skb->skb_iif;
	v.ifindex_out = ctx->state->out ? ctx->state->out->ifindex : 0;
	st = fp_state();
	if (!st)
		return NF_ACCEPT;
	v.fw_gen = st->fw_gen;
	/* Write only on change: every kernel-forwarded packet passes here */
	seen = bpf_map_lookup_elem(&fp_accepted, k);
	if (!seen || seen->fw_gen != v.fw_gen || seen->ifindex_in != v.ifindex_in || seen->ifindex_out != v.ifindex_out)
		bpf_map_update_elem(&fp_accepted, k, &v, BPF_ANY);
	return NF_ACCEPT;
}

/* fp_sweep_idle deletes the flows whose last packet is older than
 * older_than_ns, run by the daemon with BPF_PROG_RUN. Walking the cache in
 * the kernel costs tens of nanoseconds a flow; reading it out to user space
 * costs a copy of every entry and system calls. The walk may miss or
 * revisit an entry the packet path changes meanwhile: idle expiry is
 * housekeeping (the LRU and conntrack's destroy events are what bound the
 * cache), so best effort is enough. */
struct bpf_map; /* opaque: the callback only hands it back to the map helpers */

struct fp_sweep_args {
	__u64 older_than_ns;
	__u32 scanned;
	__u32 expired;
};

static long fp_sweep_one(struct bpf_map *map, struct fp_flow_key *k, struct fp_flow *f, struct fp_sweep_args *a)
{
	a->scanned++;
	if (f->last_ns < a->older_than_ns && !bpf_map_delete_elem(map, k))
		a->expired++;
	return 0;
}

SEC("syscall")
int fp_sweep_idle(struct fp_sweep_args *ctx)
{
	struct fp_sweep_args a = {.older_than_ns = ctx->older_than_ns};

	bpf_for_each_map_elem(&fp_flows, fp_sweep_one, &a, 0);
	ctx->scanned = a.scanned;
	ctx->expired = a.expired;
	return 0;
}
