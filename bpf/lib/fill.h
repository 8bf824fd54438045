/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Offload mode, the flow cache's slow paths: filling a missed or stale
 * flow, the conntrack recheck each cached flow gets once a second, and a
 * TCP flow's FIN or RST. They are global functions: the verifier checks
 * each once, on its own, instead of once for every path of the program
 * that reaches it, which had taken the programs to hundreds of thousands
 * of verified instructions (docs/benchmarks.md). Global functions take no
 * packet pointers: the caller reads what they need into the request of
 * struct fp_slow (flow.h). The conntrack kfuncs differ by program type,
 * so the paths that look entries up come once per hook (_xdp, _tc) over
 * one inline body. */
#pragma once
#include "common.h"
#include "conntrack.h"
#include "counters.h"
#include "flow.h"
#include "flowkey.h"
#include "forward.h"
#include "guard.h"
#include "kernel.h"
#include "tcp.h"

/* fp_fill_ct: the first part of a fill, from the conntrack entry: whether
 * it may be offloaded, the NAT it implies, and TCP's tracking. */
static __always_inline int fp_fill_ct(struct fp_flow *f, struct fp_flow_req *r, const struct nf_conn *ct,
				      __u8 dir, const struct fp_flow *stale)
{
	if (fp_ct_offloadable(ct, r->k.proto, &r->reason))
		return -1;
	fp_ct_nat(f, ct, dir, &r->k);
	if (r->k.proto == IPPROTO_TCP)
		fp_tcp_init(f, ct, dir, &r->seg, stale);
	return 0;
}

/* fp_fill_route routes the packet as the kernel does, and checks the
 * egress; it fills in f's egress, MACs and MTU. The kernel routes a
 * forwarded packet between its two NAT steps: a destination rewrite (DNAT,
 * or undoing SNAT on a reply) happens before, in prerouting, a source
 * rewrite after, in postrouting. So the query takes the translated
 * destination and the source as the packet arrived: rules that match the
 * source (ip rule from, sport) and the multipath hash see what the
 * kernel's lookup sees, not the masquerade address. */
static __always_inline int fp_fill_route(void *ctx, const int xdp, struct fp_flow *f, struct bpf_fib_lookup *fib,
					 struct fp_flow_req *r)
{
	struct fp_iface *egress;
	__u32 route_mtu, mtu;
	int rc;

	fp_fib_query(fib, r->k.family, r->k.proto, r->tos, r->flowinfo, r->ifindex, r->l3_len);
	fp_fib_addrs(fib, r->k.saddr, f->nat_daddr, r->k.sport, f->nat_dport);
	route_mtu = fp_route_mtu(fib->family, fib->ipv6_dst); /* ipv4_dst is its first word */
	rc = bpf_fib_lookup(ctx, fib, sizeof(*fib), 0);
	if (fp_fib_check(fib, rc, route_mtu, r->l3_len, &r->reason, &route_mtu))
		return -1;
	if (fib->ifindex == r->ifindex) {
		r->reason = FP_PASS_HAIRPIN;
		return -1;
	}
	egress = bpf_map_lookup_elem(&fp_ifaces, &fib->ifindex);
	/* XDP: only towards devices that take XDP frames, or every packet of
	 * the flow would be a cache hit that still has to pass */
	if (!egress || (xdp && !bpf_map_lookup_elem(&fp_tx_ports, &fib->ifindex))) {
		r->reason = FP_PASS_EGRESS;
		return -1;
	}
	if (egress->flags & FP_IF_NF_EGRESS) {
		r->reason = FP_PASS_NF_DEVICE_CHAIN;
		return -1;
	}
	f->ifindex_out = fib->ifindex;
	__builtin_memcpy(f->smac, fib->smac, ETH_ALEN);
	__builtin_memcpy(f->dmac, fib->dmac, ETH_ALEN);
	/* Every MTU the kernel's forwarding would apply: the link's, the FIB's
	 * answer (an IPv6 interface MTU, a PMTU exception, a locked route MTU)
	 * and any route MTU metric the lookup ignores. */
	mtu = egress->mtu;
	if (fib->mtu_result && fib->mtu_result < mtu)
		mtu = fib->mtu_result;
	if (route_mtu && route_mtu < mtu)
		mtu = route_mtu;
	f->mtu = mtu > 0xffff ? 0xffff : mtu; /* no IP packet is larger */
	return 0;
}

/* fp_fill_accepted: netfilter's verdict under the current ruleset, for
 * this ingress and f's egress, as fp_nf_accept saw it; and the packet it
 * saw left as this one would leave here: the ruleset rewrote none of its
 * headers (DSCP, TTL or hop limit beyond the hop, IPv6 flow label) and
 * marked nothing. Such flows stay with the kernel (per-packet rules
 * aside: docs/offload.md). The headers judged go into f, which forwards
 * only packets that arrive with them; the priority the kernel's path gave
 * it too, for TC's egress qdiscs (IPv4's follows from the DSCP). */
static __always_inline int fp_fill_accepted(struct fp_flow_req *r, struct fp_flow *f, const struct fp_state *st)
{
	struct fp_verdict *v = bpf_map_lookup_elem(&fp_accepted, &r->k);

	if (!v || v->fw_gen != st->fw_gen || v->ifindex_in != r->ifindex || v->ifindex_out != f->ifindex_out) {
		r->reason = FP_PASS_NOT_ACCEPTED;
		return -1;
	}
	f->in_dscp = FP_DSCP(r->tos);
	f->in_ttl = r->ttl;
	f->in_flowlabel = r->flowinfo & bpf_htonl(0x000fffff); /* IPv4: flowinfo is 0 */
	/* the verdict's packet arrived as this one, and left as it came */
	if (v->flags || v->in_dscp != f->in_dscp || v->in_ttl != f->in_ttl || v->in_flowlabel != f->in_flowlabel ||
	    FP_DSCP(v->tos) != v->in_dscp || v->hop != (__u8)(v->in_ttl - 1) || v->flowlabel != v->in_flowlabel ||
	    v->priority > 0xffff) {
		r->reason = FP_PASS_NF_REWRITE;
		return -1;
	}
	f->priority = v->priority;
	return 0;
}

/* fp_fill_commit caches the decided flow f (a re-validated stale one
 * keeps its age and counters) and tells the daemon. */
static __always_inline int fp_fill_commit(struct fp_flow *f, struct fp_flow_req *r, const struct fp_state *st,
					  const struct fp_flow *stale)
{
	/* Read before the update, which frees the stale element (another CPU
	 * may reuse it at once). A pending flow keeps in ct_refresh_ns when
	 * it last asked the daemon. */
	__u8 was_pending = stale ? stale->flags & FP_FLOW_PENDING : 0;
	__u64 asked = was_pending ? stale->ct_refresh_ns : 0;
	__u64 now = r->now;
	int ask = 0;

	f->created_ns = now;
	if (stale) {
		f->created_ns = stale->created_ns;
		f->packets = stale->packets;
		f->bytes = stale->bytes;
	}
	f->last_ns = now;
	f->ct_refresh_ns = now;
	f->fw_checked_ns = now;
	f->ifindex_in = r->ifindex;
	f->fib_gen = st->fib_gen;
	f->fw_gen = st->fw_gen;
	/* saddr and daddr are adjacent in both structs: one diff covers both */
	if (f->flags & (FP_FLOW_SNAT | FP_FLOW_DNAT))
		f->csum_addr = bpf_csum_diff((__be32 *)r->k.saddr, 32, f->nat_saddr, 32, 0);
	/* A pending flow asks the daemon, and again each refresh interval in
	 * case the request was lost (full ring, failed update); its entry is
	 * filled again by each packet until the entry is liberal. A flow is
	 * added when fastpath starts forwarding it. */
	if (f->flags & FP_FLOW_PENDING) {
		ask = !was_pending || (__s64)(now - asked) > (__s64)FP_CT_REFRESH_NS;
		if (!ask)
			f->ct_refresh_ns = asked;
	}
	if (bpf_map_update_elem(&fp_flows, &r->k, f, BPF_ANY)) {
		r->reason = FP_PASS_FLOW_TABLE_FULL; /* no room even by LRU eviction: rare */
		return -1;
	}
	if (f->flags & FP_FLOW_PENDING) {
		if (ask)
			fp_flow_event(FP_EV_FLOW_PENDING, 0, &r->k, f, r->slot);
		r->reason = FP_PASS_NOT_LIBERAL;
		return -1;
	}
	/* An established TCP connection cached (fp_ct_offloadable wants it
	 * assured and established): its source may start new flows under
	 * pressure (guard.h). Its packets no longer reach the guard's
	 * conntrack lookup, which notes the rest. */
	if (r->k.proto == IPPROTO_TCP)
		fp_guard_know(&r->k, fp_guard_conf_get());
	if (!stale || was_pending) {
		fp_count_flow(r->slot, 1);
		fp_flow_event(FP_EV_FLOW_ADD, 0, &r->k, f, r->slot);
	}
	return 0;
}

/* fp_flow_fill decides a missed or stale flow (stale: its entry, or NULL)
 * and caches it: 0 when the caller may look it up and forward the packet,
 * else r->reason says why not. Conntrack first, so the reason names what
 * is missing (no entry at all, e.g. a ruleset that never uses conntrack,
 * before "not accepted"); the entry stays held while the route and the
 * verdict are checked, and only then may its timeout be extended on the
 * kernel's behalf. */
static __always_inline int fp_flow_fill(void *ctx, const int xdp, struct fp_slow *s, const struct fp_flow *stale)
{
	const struct fp_state *st = fp_state();
	struct fp_flow_req *r;
	struct bpf_ct_opts opts;
	struct nf_conn *ct;
	int err;

	if (!s)
		return -1;
	r = &s->r;
	if (!st) {
		r->reason = FP_PASS_DISABLED; /* never: an array has its element */
		return -1;
	}
	__builtin_memset(&s->f, 0, sizeof(s->f));
	ct = fp_ct_lookup(ctx, xdp, &r->k, &opts);
	if (!ct) {
		r->reason = FP_PASS_NO_CONNTRACK;
		return -1;
	}
	err = fp_fill_ct(&s->f, r, ct, opts.dir, stale);
	if (!err)
		err = fp_fill_route(ctx, xdp, &s->f, (struct bpf_fib_lookup *)s->fib, r);
	if (!err)
		err = fp_fill_accepted(r, &s->f, st);
	if (!err) {
		fp_ct_refresh(ct, r->k.proto, st, stale ? r->now - stale->created_ns : 0);
		if (r->k.proto == IPPROTO_TCP && !fp_ct_liberal(ct))
			s->f.flags |= FP_FLOW_PENDING;
	}
	bpf_ct_release(ct);
	if (err)
		return -1;
	return fp_fill_commit(&s->f, r, st, stale);
}

__noinline int fp_flow_fill_xdp(struct xdp_md *ctx, struct fp_slow *s, const struct fp_flow *stale)
{
	return fp_flow_fill(ctx, 1, s, stale);
}

__noinline int fp_flow_fill_tc(struct __sk_buff *ctx, struct fp_slow *s, const struct fp_flow *stale)
{
	return fp_flow_fill(ctx, 0, s, stale);
}

/* fp_flow_recheck: a cached flow's once-a-second look at its conntrack
 * entry, which offloaded packets no longer refresh: still offloadable, the
 * timeout is renewed; gone or changed, the flow is evicted and the packet
 * goes to the kernel (the request's reason). */
static __always_inline int fp_flow_recheck(void *ctx, const int xdp, struct fp_slow *s, struct fp_flow *f)
{
	const struct fp_state *st = fp_state();
	struct fp_flow_req *r;
	struct bpf_ct_opts opts;
	struct nf_conn *ct;
	int bad;

	if (!s || !f || !st)
		return 0; /* never: the caller has them */
	r = &s->r;
	ct = fp_ct_lookup(ctx, xdp, &r->k, &opts);
	if (!ct) {
		r->reason = FP_PASS_NO_CONNTRACK;
		bad = 1;
	} else {
		bad = fp_ct_offloadable(ct, r->k.proto, &r->reason);
		if (!bad)
			fp_ct_refresh(ct, r->k.proto, st, r->now - f->created_ns);
		bpf_ct_release(ct);
	}
	if (bad) {
		fp_flow_evict(&r->k, f, r->reason);
		return -1;
	}
	f->ct_refresh_ns = r->now;
	return 0;
}

__noinline int fp_flow_recheck_xdp(struct xdp_md *ctx, struct fp_slow *s, struct fp_flow *f)
{
	return fp_flow_recheck(ctx, 1, s, f);
}

__noinline int fp_flow_recheck_tc(struct __sk_buff *ctx, struct fp_slow *s, struct fp_flow *f)
{
	return fp_flow_recheck(ctx, 0, s, f);
}

/* fp_flow_close: a valid FIN or RST (the request's seg) of the cached flow
 * f. In the other direction's window, it evicts the flow and goes to the
 * kernel, which must see the teardown; outside it, it is dropped (reason
 * with FP_DROP_BIT): conntrack would have called it invalid. Always -1:
 * the packet is never forwarded here. */
__noinline int fp_flow_close(struct fp_slow *s, const struct fp_flow *f)
{
	struct fp_flow_key rev;
	struct fp_flow_req *r;

	if (!s)
		return -1;
	r = &s->r;
	r->reason = FP_PASS_TCP_CLOSE;
	if (!f)
		return -1;
	fp_key_reverse(&rev, &r->k, f);
	if (!fp_tcp_in_window(bpf_map_lookup_elem(&fp_flows, &rev), &r->seg)) {
		r->reason = FP_DROP_BIT | FP_DROP_TCP_OUT_OF_WINDOW;
		return -1;
	}
	fp_flow_evict(&r->k, f, FP_PASS_TCP_CLOSE);
	return -1;
}
