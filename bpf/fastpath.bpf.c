// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
//go:build ignore

/* Entry points only: one XDP and one TC program over the same library. */
#include "lib/common.h"
#include "lib/counters.h"
#include "lib/parse.h"
#include "lib/forward.h"

char __license[] SEC("license") = "Dual BSD/GPL";

#define FP_TC_PULL_LEN 128 /* Ethernet + 2 tags + IPv6 + TCP with options */

SEC("xdp")
int fp_xdp(struct xdp_md *ctx)
{
	struct fp_pkt p = {
		.data = (void *)(long)ctx->data,
		.data_end = (void *)(long)ctx->data_end,
	};
	__u32 ifindex = ctx->ingress_ifindex;
	__u64 bytes = p.data_end - p.data;
	struct bpf_fib_lookup fib;
	struct fp_iface *in;
	__u32 reason;

	in = bpf_map_lookup_elem(&fp_ifaces, &ifindex);
	if (!in || in->mode == FP_MODE_OFF) {
		reason = FP_PASS_DISABLED;
		goto pass;
	}
	if (fp_parse(&p, &reason))
		goto pass;
	/* XDP sees frames before the stack's MAC filter: only our unicast MAC */
	if (__builtin_memcmp(p.eth->h_dest, in->mac, ETH_ALEN)) {
		reason = FP_PASS_L2_NOT_HOST;
		goto pass;
	}
	if (fp_route(ctx, &fib, &p, ifindex, 1, &reason))
		goto pass;
	/* bpf_redirect_map only records the target; the frame leaves after we
	 * return. A devmap miss (egress cannot take XDP frames) yields XDP_PASS
	 * with the frame still untouched. */
	if (bpf_redirect_map(&fp_tx_ports, fib.ifindex, XDP_PASS) != XDP_REDIRECT) {
		reason = FP_PASS_EGRESS;
		goto pass;
	}
	fp_rewrite(&p, &fib);
	fp_count_fwd(ifindex, bytes);
	return XDP_REDIRECT;
pass:
	fp_count_pass(ifindex, reason, bytes);
	return XDP_PASS;
}

SEC("tc")
int fp_tc(struct __sk_buff *skb)
{
	__u32 ifindex = skb->ifindex;
	__u64 bytes = skb->len;
	struct bpf_fib_lookup fib;
	struct fp_iface *in;
	struct fp_pkt p;
	__u32 reason;

	in = bpf_map_lookup_elem(&fp_ifaces, &ifindex);
	if (!in || in->mode == FP_MODE_OFF) {
		reason = FP_PASS_DISABLED;
		goto pass;
	}
	/* The stack already classified the frame by MAC */
	if (skb->pkt_type != 0 /* PACKET_HOST */) {
		reason = FP_PASS_L2_NOT_HOST;
		goto pass;
	}
	/* Headers may sit in paged data: make them linear before parsing */
	__builtin_memset(&p, 0, sizeof(p));
	p.data = (void *)(long)skb->data;
	p.data_end = (void *)(long)skb->data_end;
	if (p.data + FP_TC_PULL_LEN > p.data_end && p.data_end - p.data < skb->len)
		bpf_skb_pull_data(skb, skb->len < FP_TC_PULL_LEN ? skb->len : FP_TC_PULL_LEN);
	p.data = (void *)(long)skb->data;
	p.data_end = (void *)(long)skb->data_end;
	if (fp_parse(&p, &reason))
		goto pass;
	if (fp_route(skb, &fib, &p, ifindex, 0, &reason))
		goto pass;
	if (p.family == AF_INET6) {
		/* Keep a CHECKSUM_COMPLETE skb->csum true after the hop limit edit */
		__be32 old = *(__be32 *)(p.l3 + 4);

		fp_rewrite(&p, &fib);
		bpf_csum_update(skb, bpf_csum_diff(&old, 4, (__be32 *)(p.l3 + 4), 4, 0));
	} else {
		fp_rewrite(&p, &fib);
	}
	fp_count_fwd(ifindex, bytes);
	return bpf_redirect(fib.ifindex, 0);
pass:
	fp_count_pass(ifindex, reason, bytes);
	return TC_ACT_OK;
}
