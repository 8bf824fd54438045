/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* The decision every packet goes through, one skeleton for the XDP and TC
 * programs (docs/architecture.md, "Per-packet pipeline"). xdp is a
 * compile-time constant: where the hooks differ, the skeleton calls the
 * hook's own small step from xdp.h or tc.h and the compiler keeps only
 * that one.
 *
 * Bulk TCP under native XDP: a redirected frame leaves one by one, each
 * built into an skb at the far end, while the stack's GRO would merge a
 * burst of segments into one skb first. So where a TC program sits behind
 * XDP (FP_IF_GRO_TC), XDP hands every TCP segment of an offloaded flow to
 * the stack uncounted (all of them, so that GRO keeps their order); GRO
 * merges them and the TC program forwards the aggregate. UDP keeps the XDP
 * redirect. (XDP metadata would mark them, but this kernel refuses
 * bpf_xdp_adjust_meta: TC recognises them by the same rule, TCP of a flow
 * already cached and current; no fill there, which would skip XDP's rule
 * that the egress takes XDP frames.) Behind XDP, the TC program forwards
 * only those; what it does not forward, and everything else, goes on to
 * the next program or the stack uncounted: XDP guarded, judged and counted
 * it. */
#pragma once
#include "common.h"
#include "counters.h"
#include "forward.h"
#include "guard.h"
#include "offload.h"
#include "parse.h"
#include "tc.h"
#include "xdp.h"

static __always_inline int fp_run(void *ctx, const int xdp)
{
	const int act_pass = xdp ? XDP_PASS : TC_ACT_OK;
	__u32 ifindex = xdp ? fp_xdp_ifindex(ctx) : fp_tc_ifindex(ctx);
	__u64 bytes = xdp ? fp_xdp_len(ctx) : fp_tc_len(ctx);
	__u32 reason = FP_PASS_FIB_OTHER; /* every path sets its own */
	struct fp_iface *in;
	struct fp_flow *f;
	struct fp_pkt p;
	__u32 l3_len, slot;
	int behind;

	in = bpf_map_lookup_elem(&fp_ifaces, &ifindex);
	if (!in)
		return act_pass; /* not managed: not counted either */
	slot = in->slot;
	behind = !xdp && (in->flags & FP_IF_GRO_TC);
	if (!behind && fp_guard_active(fp_guard_conf_get()) &&
	    (xdp ? fp_xdp_guard(ctx, ifindex, slot, in->mode) : fp_tc_guard(ctx, ifindex, slot, in->mode)))
		return xdp ? XDP_DROP : TC_ACT_SHOT;
	if (in->mode == FP_MODE_OFF) {
		reason = FP_PASS_DISABLED;
		goto pass;
	}
	{
		const struct fp_state *st = fp_state();

		if (st && (st->hold_all || (in->mode == FP_MODE_OFFLOAD && st->hold_offload))) {
			reason = st->hold_all ? st->hold_all : st->hold_offload;
			goto pass;
		}
	}
	if (in->flags & FP_IF_NF_INGRESS) {
		reason = FP_PASS_NF_DEVICE_CHAIN;
		goto pass;
	}
	if (!xdp && !fp_tc_to_host(ctx)) {
		reason = FP_PASS_L2_NOT_HOST;
		goto pass;
	}
	if (xdp)
		fp_xdp_pkt(ctx, &p);
	else
		fp_tc_pkt(ctx, &p);
	if (fp_parse(&p, &reason))
		goto pass;
	if (xdp && !fp_xdp_to_host(&p, in)) {
		reason = FP_PASS_L2_NOT_HOST;
		goto pass;
	}
	if (!xdp && fp_tc_vlan_hidden(ctx)) {
		reason = FP_PASS_VLAN;
		goto pass;
	}
	l3_len = xdp ? p.tot_len : fp_tc_l3_len(ctx, &p);
	if (behind && (in->mode != FP_MODE_OFFLOAD || p.l4_proto != IPPROTO_TCP))
		return TC_ACT_UNSPEC;

	if (in->mode == FP_MODE_OFFLOAD) {
		if (behind && !fp_flow_current(&p, ifindex))
			return TC_ACT_UNSPEC;
		f = fp_flow_get(ctx, xdp, &p, ifindex, slot, l3_len, &reason);
		if (!f) {
			if (reason & FP_DROP_BIT) {
				fp_count_drop(slot, reason & ~FP_DROP_BIT, bytes);
				return xdp ? XDP_DROP : TC_ACT_SHOT;
			}
			goto pass;
		}
		if (l3_len > f->mtu) {
			reason = FP_PASS_FRAG_NEEDED;
			goto pass;
		}
		if (xdp && (in->flags & FP_IF_GRO_TC) && p.l4_proto == IPPROTO_TCP)
			return XDP_PASS; /* to GRO, then TC, which counts it */
		if (fp_flow_csum_bad(ctx, xdp, &p)) {
			reason = FP_PASS_BAD_CHECKSUM;
			goto pass;
		}
		if (xdp && !fp_xdp_can_send(f->ifindex_out)) {
			reason = FP_PASS_EGRESS;
			goto pass;
		}
		return xdp ? fp_xdp_flow(ctx, &p, f, slot) : fp_tc_flow(ctx, &p, f, slot);
	}

	{
		struct bpf_fib_lookup fib;

		if (fp_route(ctx, &fib, &p, ifindex, l3_len, &reason))
			goto pass;
		if (xdp && !fp_xdp_can_send(fib.ifindex)) {
			reason = FP_PASS_EGRESS;
			goto pass;
		}
		return xdp ? fp_xdp_route(ctx, &p, &fib, slot) : fp_tc_route(ctx, &p, &fib, slot);
	}
pass:
	if (behind)
		return TC_ACT_UNSPEC; /* XDP counted it */
	fp_count_pass(slot, reason, bytes);
	return act_pass;
}
