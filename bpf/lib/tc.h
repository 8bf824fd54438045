/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* The TC program's own steps (pipeline.h calls them): an skb whose headers
 * may sit in paged data, whose checksum state the kernel keeps (its
 * helpers edit checksums), and which may be a GRO aggregate. */
#pragma once
#include "common.h"
#include "counters.h"
#include "flow.h"
#include "forward.h"
#include "guard.h"
#include "parse.h"

#define FP_TC_PULL_LEN 128 /* Ethernet + 2 tags + IPv6 + TCP with options */

static __always_inline __u32 fp_tc_ifindex(const struct __sk_buff *skb)
{
	return skb->ifindex;
}

static __always_inline __u64 fp_tc_len(const struct __sk_buff *skb)
{
	return skb->len;
}

/* fp_tc_pull makes the headers linear when they are not; packet pointers
 * die, the caller reloads them. */
static __always_inline void fp_tc_pull(struct __sk_buff *skb)
{
	void *data = (void *)(long)skb->data, *data_end = (void *)(long)skb->data_end;

	if (data + FP_TC_PULL_LEN > data_end && data_end - data < skb->len)
		bpf_skb_pull_data(skb, skb->len < FP_TC_PULL_LEN ? skb->len : FP_TC_PULL_LEN);
}

/* fp_tc_guard: the guard (guard.h) on the skb, a global function:
 * verified once, called only when fp_guard_active. pkts is what a GRO
 * aggregate carries. */
__noinline int fp_tc_guard(struct __sk_buff *skb, __u32 ifindex, __u32 slot, __u32 mode)
{
	fp_tc_pull(skb);
	return fp_guard(skb, 0, (void *)(long)skb->data, (void *)(long)skb->data_end, skb->len,
			skb->gso_segs > 1 ? skb->gso_segs : 1, ifindex, slot, mode);
}

/* The stack already classified the frame by MAC: only ours. */
static __always_inline int fp_tc_to_host(const struct __sk_buff *skb)
{
	return skb->pkt_type == 0; /* PACKET_HOST */
}

/* fp_tc_pkt sets p up to parse the skb's headers, made linear first. */
static __always_inline void fp_tc_pkt(struct __sk_buff *skb, struct fp_pkt *p)
{
	fp_tc_pull(skb);
	__builtin_memset(p, 0, sizeof(*p));
	p->len = skb->len;
	p->data = (void *)(long)skb->data;
	p->data_end = (void *)(long)skb->data_end;
}

/* A tag the driver or stack moved into metadata is invisible to the
 * parser; the frame still belongs to a VLAN device. */
static __always_inline int fp_tc_vlan_hidden(const struct __sk_buff *skb)
{
	return skb->vlan_present;
}

/* fp_tc_l3_len: the L3 length of each packet that will leave. A GSO skb
 * (a GRO aggregate) leaves as segments of gso_size payload, each with the
 * headers; the kernel's own forwarding checks those against the MTU. */
static __always_inline __u32 fp_tc_l3_len(const struct __sk_buff *skb, const struct fp_pkt *p)
{
	if (!skb->gso_size)
		return p->tot_len;
	return (__u32)(p->l4 - p->l3) + p->l4_hdr_len + skb->gso_size;
}

/* fp_tc_fwd_bytes: what a forwarded skb counts, without the trailer
 * fp_tc_trim cuts (a GRO aggregate has none). */
static __always_inline __u64 fp_tc_fwd_bytes(const struct __sk_buff *skb, const struct fp_pkt *p)
{
	return skb->gso_size ? skb->len : fp_frame_len(p);
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
static __always_inline long fp_tc_flow(struct __sk_buff *skb, struct fp_pkt *p, struct fp_flow *f, __u32 slot)
{
	__u32 l4 = p->l4 - p->data;
	__u32 check = l4 + fp_l4_check_off(p->l4_proto);
	__u64 mangled = p->l4_proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
	__u64 bytes = fp_tc_fwd_bytes(skb, p);
	__be16 *ports = p->l4;
	__be16 old_sport, old_dport;
	int nat = f->flags & (FP_FLOW_SNAT | FP_FLOW_DNAT);
	__be32 old_v6word;

	fp_flow_account(f, bytes);
	fp_count_fwd(slot, bytes);
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
	skb->priority = f->priority;
	return bpf_redirect(f->ifindex_out, 0);
}

/* fp_tc_route forwards a route-mode skb as the FIB answered. */
static __always_inline long fp_tc_route(struct __sk_buff *skb, struct fp_pkt *p, const struct bpf_fib_lookup *fib,
					__u32 slot)
{
	__be32 old_v6word = fp_v6_word(p);

	fp_rewrite(p, fib);
	fp_tc_csum_v6(skb, p, old_v6word);
	fp_count_fwd(slot, fp_tc_fwd_bytes(skb, p));
	/* as ip_forward (net.ipv4.ip_forward_update_priority, default 1);
	 * IPv6 forwarding keeps the skb's */
	if (p->family == AF_INET)
		skb->priority = fp_tos2priority(p->tos);
	fp_tc_trim(skb, p);
	return bpf_redirect(fib->ifindex, 0);
}
