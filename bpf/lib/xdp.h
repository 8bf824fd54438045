/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* The XDP program's own steps (pipeline.h calls them): a linear frame
 * before the stack saw it (no MAC filter yet, no checksum state), sent on
 * through the devmap of devices that take XDP frames. */
#pragma once
#include "common.h"
#include "counters.h"
#include "flow.h"
#include "forward.h"
#include "guard.h"
#include "parse.h"

static __always_inline __u32 fp_xdp_ifindex(const struct xdp_md *ctx)
{
	return ctx->ingress_ifindex;
}

static __always_inline __u64 fp_xdp_len(const struct xdp_md *ctx)
{
	return ctx->data_end - ctx->data; /* frags-unaware: linear only */
}

/* fp_xdp_guard: the guard (guard.h), a global function: verified once,
 * called only when fp_guard_active. */
__noinline int fp_xdp_guard(struct xdp_md *ctx, __u32 ifindex, __u32 slot, __u32 mode)
{
	return fp_guard(ctx, 1, (void *)(long)ctx->data, (void *)(long)ctx->data_end, fp_xdp_len(ctx), 1, ifindex,
			slot, mode);
}

static __always_inline void fp_xdp_pkt(const struct xdp_md *ctx, struct fp_pkt *p)
{
	__builtin_memset(p, 0, sizeof(*p));
	p->data = (void *)(long)ctx->data;
	p->data_end = (void *)(long)ctx->data_end;
	p->len = p->data_end - p->data;
}

/* XDP sees frames before the stack's MAC filter: only our unicast MAC. */
static __always_inline int fp_xdp_to_host(const struct fp_pkt *p, const struct fp_iface *in)
{
	return !__builtin_memcmp(p->eth->h_dest, in->mac, ETH_ALEN);
}

/* fp_xdp_can_send: bpf_redirect_map only records the target; the frame
 * leaves after the program returns. A devmap miss (the egress cannot take
 * XDP frames) leaves the frame untouched, to pass: so this comes before
 * any edit. */
static __always_inline int fp_xdp_can_send(__u32 ifindex_out)
{
	return bpf_redirect_map(&fp_tx_ports, ifindex_out, XDP_PASS) == XDP_REDIRECT;
}

/* fp_xdp_trim cuts what follows the IP datagram (Ethernet padding, a
 * trailer), as the kernel's receive path does, and returns the length
 * sent. Packet pointers die: it comes last. */
static __always_inline __u64 fp_xdp_trim(struct xdp_md *ctx, const struct fp_pkt *p)
{
	__u32 trailer = p->len - fp_frame_len(p);

	if (trailer)
		bpf_xdp_adjust_tail(ctx, -(int)trailer);
	return p->len - trailer;
}

/* fp_xdp_flow forwards an offloaded flow's frame (fp_xdp_can_send
 * said yes), checksums edited in place. */
static __always_inline int fp_xdp_flow(struct xdp_md *ctx, struct fp_pkt *p, struct fp_flow *f, __u32 slot)
{
	__u64 bytes;

	fp_flow_rewrite_l3(p, f);
	fp_flow_rewrite_l4_xdp(p, f);
	bytes = fp_xdp_trim(ctx, p);
	fp_flow_account(f, bytes);
	fp_count_fwd(slot, bytes);
	return XDP_REDIRECT;
}

/* fp_xdp_route forwards a route-mode frame as the FIB answered. */
static __always_inline int fp_xdp_route(struct xdp_md *ctx, struct fp_pkt *p, const struct bpf_fib_lookup *fib,
					__u32 slot)
{
	fp_rewrite(p, fib);
	fp_count_fwd(slot, fp_xdp_trim(ctx, p));
	return XDP_REDIRECT;
}
