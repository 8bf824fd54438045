/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Offload mode: which cached flow forwards a packet. A hit with current
 * generations carries the whole rewrite and stays inline (the hit path);
 * a miss, a stale entry, the once-a-second conntrack recheck and a TCP
 * FIN or RST go to the slow paths in fill.h. */
#pragma once
#include "common.h"
#include "fill.h"
#include "flow.h"
#include "flowkey.h"
#include "forward.h"
#include "l4csum.h"
#include "parse.h"
#include "tcp.h"

/* fp_flow_headers_as: the packet arrives with the DSCP, TTL or hop limit
 * and flow label its flow was judged with (fp_fill_accepted). One that
 * arrives otherwise goes through the fill again: its kernel pass shows
 * what the ruleset does to such a packet. */
static __always_inline int fp_flow_headers_as(const struct fp_flow *f, const struct fp_pkt *p)
{
	return FP_DSCP(p->tos) == f->in_dscp && p->ttl == f->in_ttl && fp_flowlabel(p) == f->in_flowlabel;
}

/* fp_flow_current: the packet's flow is cached, for this ingress, under
 * the current routes and ruleset, with these headers, and not waiting for
 * its entry: what XDP hands a TC program behind it (FP_IF_GRO_TC). */
static __always_inline int fp_flow_current(const struct fp_pkt *p, __u32 ifindex)
{
	const struct fp_state *st = fp_state();
	struct fp_flow_key k;
	struct fp_flow *f;

	if (!st)
		return 0;
	fp_key_of(&k, p);
	f = bpf_map_lookup_elem(&fp_flows, &k);
	return f && f->fib_gen == st->fib_gen && f->fw_gen == st->fw_gen && f->ifindex_in == ifindex &&
	       !(f->flags & FP_FLOW_PENDING) && fp_flow_headers_as(f, p);
}

/* fp_flow_csum_bad: a packet of an offloaded flow with a TCP/UDP checksum
 * conntrack would call invalid (when it verifies them,
 * nf_conntrack_checksum). It goes to the kernel, which drops it or lets the
 * ruleset see it as invalid, as without fastpath; only packets about to be
 * forwarded need the check, every other goes to the kernel anyway. A bad
 * FIN or RST has evicted its flow by then: harmless, conntrack ignores the
 * packet and the flow is offloaded again. */
static __always_inline int fp_flow_csum_bad(void *ctx, const int xdp, const struct fp_pkt *p)
{
	const struct fp_state *st = fp_state();

	return st && !(st->flags & FP_STATE_NO_CHECKSUM) && !fp_l4_csum_ok(ctx, xdp, p);
}

/* fp_flow_get returns the flow to forward the packet with, or NULL and the
 * reason it goes to the kernel (FP_DROP_BIT | why, if it is dropped).
 * xdp is a compile-time constant: each program calls the slow paths of its
 * own context type. */
static __always_inline struct fp_flow *fp_flow_get(void *ctx, const int xdp, const struct fp_pkt *p,
						   __u32 ifindex, __u32 slot, __u32 l3_len, __u32 *reason)
{
	const struct fp_state *st = fp_state();
	struct fp_flow *f, *stale = NULL;
	struct fp_flow_key k;
	struct fp_slow *s;
	__u64 now;

	if (!st) {
		*reason = FP_PASS_DISABLED;
		return NULL;
	}
	if (p->l4_proto != IPPROTO_TCP && p->l4_proto != IPPROTO_UDP) {
		*reason = FP_PASS_ICMP;
		return NULL;
	}
	/* The coarse clock (jiffies) is all a heartbeat, a refresh interval and
	 * idle times need, at a fraction of a full clock read per packet. It
	 * may lag the daemon's precise heartbeat by a tick: compare signed. */
	now = bpf_ktime_get_coarse_ns();
	/* Fail open: without a live daemon nobody invalidates the cache */
	if ((__s64)(now - st->heartbeat_ns) > (__s64)st->watchdog_ns) {
		*reason = FP_PASS_WATCHDOG;
		return NULL;
	}
	fp_key_of(&k, p);
	f = bpf_map_lookup_elem(&fp_flows, &k);
	if (p->l4_proto == IPPROTO_TCP) {
		switch (fp_tcp_kind(p->tcp_flags)) {
		case FP_TCP_KIND_DATA:
			if (f)
				fp_tcp_seen(f, p);
			break;
		case FP_TCP_KIND_CLOSE:
			*reason = FP_PASS_TCP_CLOSE;
			s = fp_slow_start(&k, now, ifindex, slot);
			if (s) {
				fp_tcp_seg_of(&s->r.seg, p);
				fp_flow_close(s, f);
				*reason = s->r.reason;
			}
			return NULL;
		default:
			*reason = FP_PASS_TCP_FLAGS;
			return NULL;
		}
	}
	if (f && (f->fib_gen != st->fib_gen || f->fw_gen != st->fw_gen || f->ifindex_in != ifindex ||
		  (f->flags & FP_FLOW_PENDING) || !fp_flow_headers_as(f, p))) {
		stale = f; /* decide again; the fill overwrites it */
		f = NULL;
	}
	/* The ruleset can change without an event (a set element times out,
	 * iptables-legacy): every revalidate_ns the flow's packet goes through
	 * it again, with its verdict forgotten, and the flow is offloaded
	 * again only once the kernel forwarded that packet. */
	if (f && st->revalidate_ns && (__s64)(now - f->fw_checked_ns) > (__s64)st->revalidate_ns) {
		bpf_map_delete_elem(&fp_accepted, &k);
		f->fw_gen = st->fw_gen - 1; /* stale: the next packet fills again */
		*reason = FP_PASS_REVALIDATE;
		return NULL;
	}
	if (f && (__s64)(now - f->ct_refresh_ns) > (__s64)FP_CT_REFRESH_NS) {
		s = fp_slow_start(&k, now, ifindex, slot);
		if (s && (xdp ? fp_flow_recheck_xdp(ctx, s, f) : fp_flow_recheck_tc(ctx, s, f))) {
			*reason = s->r.reason;
			return NULL;
		}
	}
	if (!f) {
		*reason = FP_PASS_DISABLED; /* no working memory: never */
		s = fp_slow_start(&k, now, ifindex, slot);
		if (!s)
			return NULL;
		s->r.l3_len = l3_len;
		s->r.tos = p->tos;
		s->r.ttl = p->ttl;
		s->r.flowinfo = fp_flowinfo(p);
		if (p->l4_proto == IPPROTO_TCP)
			fp_tcp_seg_of(&s->r.seg, p);
		if (xdp ? fp_flow_fill_xdp(ctx, s, stale) : fp_flow_fill_tc(ctx, s, stale)) {
			*reason = s->r.reason;
			return NULL;
		}
		f = bpf_map_lookup_elem(&fp_flows, &k);
		if (!f) {
			*reason = FP_PASS_FLOW_RACE; /* evicted at once by a concurrent fill */
			return NULL;
		}
	}
	if (f->last_ns != now)
		f->last_ns = now; /* once per tick: the line is shared by CPUs */
	return f;
}
