/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Offload mode: the flow cache. A miss asks netfilter's recorded verdict
 * and conntrack whether the flow may be offloaded and fills the cache with
 * the whole rewrite; a hit forwards with no other lookup. */
#pragma once
#include "common.h"
#include "csum.h"
#include "conntrack.h"
#include "counters.h"
#include "forward.h"
#include "l4csum.h"

#define FP_CT_REFRESH_NS 1000000000ULL /* refresh conntrack at most once a second per flow */

static __always_inline const struct fp_state *fp_state(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&fp_globals, &zero);
}

/* fp_flow_event tells the daemon about a flow; a full ring drops it. */
static __always_inline void fp_flow_event(__u32 type, __u32 reason, const struct fp_flow_key *k,
					  const struct fp_flow *f, __u32 slot)
{
	struct fp_event *e = bpf_ringbuf_reserve(&fp_events, sizeof(*e), 0);

	if (!e) {
		fp_count_event_lost(slot);
		return;
	}
	e->ts_ns = bpf_ktime_get_ns();
	e->type = type;
	e->reason = reason;
	e->ifindex_in = f->ifindex_in;
	e->ifindex_out = f->ifindex_out;
	e->key = *k;
	__builtin_memcpy(e->nat_saddr, f->nat_saddr, 16);
	__builtin_memcpy(e->nat_daddr, f->nat_daddr, 16);
	e->nat_sport = f->nat_sport;
	e->nat_dport = f->nat_dport;
	e->flags = f->flags;
	e->pad[0] = e->pad[1] = e->pad[2] = 0;
	bpf_ringbuf_submit(e, 0);
}

/* fp_flow_evict removes a flow and its other direction. */
static __always_inline void fp_flow_evict(const struct fp_flow_key *k, const struct fp_flow *f, __u32 slot,
					  __u32 reason)
{
	struct fp_flow_key rev = {
		.family = k->family,
		.proto = k->proto,
		.sport = f->nat_dport,
		.dport = f->nat_sport,
	};

	struct fp_flow gone = *f; /* f's element is freed by the delete */

	__builtin_memcpy(rev.saddr, f->nat_daddr, 16);
	__builtin_memcpy(rev.daddr, f->nat_saddr, 16);
	/* a pending flow was never added: nothing to announce */
	if (bpf_map_delete_elem(&fp_flows, k) == 0 && !(gone.flags & FP_FLOW_PENDING)) {
		fp_count_flow(slot, 0);
		fp_flow_event(FP_EV_FLOW_DEL, reason, k, &gone, slot);
	}
	bpf_map_delete_elem(&fp_flows, &rev);
}

/* TCP sequence space, per direction. conntrack, window-liberal for an
 * offloaded flow (see docs/offload.md), would accept any FIN or RST; without
 * fastpath it would call one outside the window INVALID and keep the
 * connection. Each direction's entry keeps the furthest edge it allowed the
 * other side to send up to (ack + window << scale, conntrack's td_maxend)
 * as the ack and window that set it; a FIN or RST is checked against the
 * other direction's entry. */

/* fp_tcp_hdr: the TCP header fp_parse proved (checked again for the
 * verifier), or NULL. */
static __always_inline struct tcphdr *fp_tcp_hdr(const struct fp_pkt *p)
{
	struct tcphdr *th = p->l4;

	if ((void *)(th + 1) > p->data_end)
		return NULL;
	return th;
}

/* fp_tcp_edge: how far the direction's windows let the other side send. */
static __always_inline __u32 fp_tcp_edge(const struct fp_flow *f)
{
	return f->tcp_ack + ((__u32)f->tcp_win << (f->tcp_wscale & 15));
}

/* fp_tcp_widen moves f's edge out to edge, if that is further. */
static __always_inline void fp_tcp_widen(struct fp_flow *f, __u32 edge)
{
	__u8 s = f->tcp_wscale & 15;
	__u32 win;

	if ((__s32)(edge - fp_tcp_edge(f)) <= 0)
		return;
	win = (edge - f->tcp_ack + (1U << s) - 1) >> s;
	f->tcp_win = win > 0xffff ? 0xffff : win;
}

/* fp_tcp_seen notes a segment of f's direction; it writes only when the
 * edge moves (or the ack does, at the same edge). An ack past the old edge
 * acknowledges data the other side was never allowed to send: a forged or
 * broken segment, which must not move the edge (it would make a genuine
 * FIN or RST of the other side look out of window). */
static __always_inline void fp_tcp_seen(struct fp_flow *f, const struct fp_pkt *p)
{
	struct tcphdr *th = fp_tcp_hdr(p);
	__u32 ack, edge, old;
	__u16 win;

	if (!th)
		return;
	ack = bpf_ntohl(th->ack_seq);
	win = bpf_ntohs(th->window);
	edge = ack + ((__u32)win << (f->tcp_wscale & 15));
	old = fp_tcp_edge(f);
	if ((__s32)(ack - old) > 0)
		return;
	if ((__s32)(edge - old) > 0 || (edge == old && (__s32)(ack - f->tcp_ack) > 0)) {
		f->tcp_ack = ack;
		f->tcp_win = win;
	}
}

/* fp_tcp_init fills a TCP flow's tracking when it is cached: the window
 * scale conntrack learnt from the handshake (when no SYN it saw carried
 * one, it may have picked the connection up mid-stream: then the largest,
 * so no real FIN or RST is refused), the segment's own ack and window,
 * widened to the furthest edge conntrack or the stale entry knew. A
 * function of its own: the programs' frame has no room left. */
static __noinline void fp_tcp_init(struct fp_flow *f, const struct nf_conn *ct, __u8 dir,
					const struct fp_pkt *p, const struct fp_flow *prev)
{
	__u8 flags0 = ct->proto.tcp.seen[0].flags, flags1 = ct->proto.tcp.seen[1].flags;
	struct tcphdr *th;
	__u32 ct_edge;

	if (flags0 & flags1 & FP_CT_TCP_WINDOW_SCALE)
		f->tcp_wscale = dir ? ct->proto.tcp.seen[1].td_scale : ct->proto.tcp.seen[0].td_scale;
	else if ((flags0 | flags1) & FP_CT_TCP_WINDOW_SCALE)
		f->tcp_wscale = 0; /* one side offered none: windows are not scaled */
	else
		f->tcp_wscale = 14;
	if (f->tcp_wscale > 14)
		f->tcp_wscale = 14;
	/* the other side's td_maxend is the edge this direction's acks set */
	ct_edge = dir ? ct->proto.tcp.seen[0].td_maxend : ct->proto.tcp.seen[1].td_maxend;
	th = fp_tcp_hdr(p);
	if (th) {
		f->tcp_ack = bpf_ntohl(th->ack_seq);
		f->tcp_win = bpf_ntohs(th->window);
	}
	fp_tcp_widen(f, ct_edge);
	if (prev)
		fp_tcp_widen(f, prev->tcp_ack + ((__u32)prev->tcp_win << (prev->tcp_wscale & 15)));
}

/* fp_tcp_in_window: 0 when a FIN or RST of f's direction is, for certain,
 * outside the window the other direction advertised, as conntrack with
 * its window would judge it (tcp_in_window: the sequence number at most
 * the edge, the end no more than a window below); 1 when in the window or
 * when the other direction is not cached (nothing known: the kernel
 * decides, as before). */
static __always_inline int fp_tcp_in_window(const struct fp_flow_key *k, const struct fp_flow *f,
					    const struct fp_pkt *p)
{
	struct fp_flow_key rev = {
		.family = k->family,
		.proto = k->proto,
		.sport = f->nat_dport,
		.dport = f->nat_sport,
	};
	struct tcphdr *th = fp_tcp_hdr(p);
	const struct fp_flow *r;
	__u32 win, seq, end, edge;

	if (!th)
		return 1;
	seq = bpf_ntohl(th->seq);

	__builtin_memcpy(rev.saddr, f->nat_daddr, 16);
	__builtin_memcpy(rev.daddr, f->nat_saddr, 16);
	r = bpf_map_lookup_elem(&fp_flows, &rev);
	if (!r)
		return 1;
	win = (__u32)r->tcp_win << (r->tcp_wscale & 15);
	edge = r->tcp_ack + win;
	end = seq + (p->tot_len - (__u32)(p->l4 - p->l3) - p->l4_hdr_len) + ((p->tcp_flags & FP_TCP_FIN) ? 1 : 0);
	if ((__s32)(seq - edge) > 0)
		return 0;
	if ((__s32)(end - (r->tcp_ack - win)) < 0)
		return 0;
	return 1;
}

/* fp_flow_fill decides a missed or stale flow and caches it. */
static __always_inline struct fp_flow *fp_flow_fill(void *ctx, const int xdp, const struct fp_pkt *p,
						    const struct fp_flow_key *k, __u32 ifindex, __u32 slot, __u32 l3_len,
						    const struct fp_state *st, __u64 now,
						    const struct fp_flow *stale, __u32 *reason)
{
	struct bpf_fib_lookup fib;
	struct bpf_ct_opts opts;
	struct fp_iface *egress;
	struct fp_verdict *accepted;
	struct fp_flow f = {}, *fp;
	struct nf_conn *ct;
	__u32 route_mtu, mtu;
	/* Copied now: the update below frees the stale element, which another
	 * CPU may reuse at once. A pending flow keeps in ct_refresh_ns when it
	 * last asked the daemon. */
	__u8 was_pending = stale ? stale->flags & FP_FLOW_PENDING : 0;
	__u64 asked = was_pending ? stale->ct_refresh_ns : 0;
	int ask = 0;
	int rc;

	/* Conntrack first, so the reason names what is missing (no entry at
	 * all, e.g. a ruleset that never uses conntrack, before "not accepted") */
	ct = fp_ct_lookup(ctx, xdp, k, &opts);
	if (!ct) {
		*reason = FP_PASS_NO_CONNTRACK;
		return NULL;
	}
	if (fp_ct_offloadable(ct, k->proto, reason))
		goto release;
	fp_ct_nat(&f, ct, opts.dir, k);
	if (k->proto == IPPROTO_TCP)
		fp_tcp_init(&f, ct, opts.dir, p, stale);

	/* Route the packet as it will leave: after NAT (the entry stays held:
	 * the verdict below needs the egress before the timeout may change) */
	fp_fib_params(&fib, p, ifindex, l3_len, f.nat_saddr, f.nat_daddr, f.nat_sport, f.nat_dport);
	route_mtu = fp_route_mtu(fib.family, fib.ipv6_dst); /* ipv4_dst is its first word */
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	if (fp_fib_check(&fib, rc, route_mtu, l3_len, reason, &route_mtu))
		goto release;
	if (fib.ifindex == ifindex) {
		*reason = FP_PASS_HAIRPIN;
		goto release;
	}
	egress = bpf_map_lookup_elem(&fp_ifaces, &fib.ifindex);
	/* XDP: only towards devices that take XDP frames, or every packet of
	 * the flow would be a cache hit that still has to pass */
	if (!egress || (xdp && !bpf_map_lookup_elem(&fp_tx_ports, &fib.ifindex))) {
		*reason = FP_PASS_EGRESS;
		goto release;
	}
	if (egress->flags & FP_IF_NF_EGRESS) {
		*reason = FP_PASS_NF_DEVICE_CHAIN;
		goto release;
	}
	/* Netfilter's verdict under the current ruleset, for this ingress and
	 * this egress, seen by fp_nf_accept; only then may the entry's timeout
	 * be extended on the kernel's behalf */
	accepted = bpf_map_lookup_elem(&fp_accepted, k);
	if (!accepted || accepted->fw_gen != st->fw_gen || accepted->ifindex_in != ifindex ||
	    accepted->ifindex_out != fib.ifindex) {
		*reason = FP_PASS_NOT_ACCEPTED;
		goto release;
	}
	fp_ct_refresh(ct, k->proto, st, stale ? now - stale->created_ns : 0);
	if (k->proto == IPPROTO_TCP && !fp_ct_liberal(ct))
		f.flags |= FP_FLOW_PENDING;
	bpf_ct_release(ct);

	f.created_ns = now;
	if (stale) {
		/* re-validated, not new: the flow keeps its age and counters */
		f.created_ns = stale->created_ns;
		f.packets = stale->packets;
		f.bytes = stale->bytes;
	}
	f.last_ns = now;
	f.ct_refresh_ns = now;
	f.fw_checked_ns = now;
	f.ifindex_in = ifindex;
	f.ifindex_out = fib.ifindex;
	f.fib_gen = st->fib_gen;
	f.fw_gen = st->fw_gen;
	/* Every MTU the kernel's forwarding would apply: the link's, the FIB's
	 * answer (an IPv6 interface MTU, a PMTU exception, a locked route MTU)
	 * and any route MTU metric the lookup ignores. */
	mtu = egress->mtu;
	if (fib.mtu_result && fib.mtu_result < mtu)
		mtu = fib.mtu_result;
	if (route_mtu && route_mtu < mtu)
		mtu = route_mtu;
	f.mtu = mtu > 0xffff ? 0xffff : mtu; /* no IP packet is larger */
	__builtin_memcpy(f.smac, fib.smac, ETH_ALEN);
	__builtin_memcpy(f.dmac, fib.dmac, ETH_ALEN);
	/* saddr and daddr are adjacent in both structs: one diff covers both */
	if (f.flags & (FP_FLOW_SNAT | FP_FLOW_DNAT))
		f.csum_addr = bpf_csum_diff((__be32 *)k->saddr, 32, f.nat_saddr, 32, 0);
	/* A pending flow asks the daemon, and again each refresh interval in
	 * case the request was lost (full ring, failed update); its entry is
	 * filled again by each packet until the entry is liberal. A flow is
	 * added when fastpath starts forwarding it. */
	if (f.flags & FP_FLOW_PENDING) {
		ask = !was_pending || (__s64)(now - asked) > (__s64)FP_CT_REFRESH_NS;
		if (!ask)
			f.ct_refresh_ns = asked;
	}
	if (bpf_map_update_elem(&fp_flows, k, &f, BPF_ANY)) {
		*reason = FP_PASS_FLOW_TABLE_FULL; /* no room even by LRU eviction: rare */
		return NULL;
	}
	if (f.flags & FP_FLOW_PENDING) {
		if (ask)
			fp_flow_event(FP_EV_FLOW_PENDING, 0, k, &f, slot);
		*reason = FP_PASS_NOT_LIBERAL;
		return NULL;
	}
	if (!stale || was_pending) {
		fp_count_flow(slot, 1);
		fp_flow_event(FP_EV_FLOW_ADD, 0, k, &f, slot);
	}
	fp = bpf_map_lookup_elem(&fp_flows, k);
	if (!fp)
		*reason = FP_PASS_FLOW_RACE; /* evicted at once by a concurrent fill */
	return fp;
release:
	bpf_ct_release(ct);
	return NULL;
}

/* fp_flow_current: the packet's flow is cached, for this ingress, under
 * the current routes and ruleset, and not waiting for its entry: what XDP
 * hands a TC program behind it (FP_IF_GRO_TC). */
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
	       !(f->flags & FP_FLOW_PENDING);
}

/* What a TCP segment's flags make of it on an offloaded flow. conntrack
 * calls a segment invalid unless its flags, PSH, ECE and CWR aside, are one
 * of SYN, SYN|URG, SYN|ACK, RST, RST|ACK, FIN|ACK, FIN|ACK|URG, ACK,
 * ACK|URG (tcp_valid_flags in nf_conntrack_proto_tcp.c). Only ACKs ride the
 * fast path; a valid FIN or RST ends the flow there and goes to the kernel;
 * anything else (a SYN, no flags, an invalid mix) goes to the kernel with
 * the flow left as it is, for conntrack to judge as it would without
 * fastpath: an invalid FIN|SYN must not evict anything. */
enum fp_tcp_kind {
	FP_TCP_KIND_DATA,
	FP_TCP_KIND_CLOSE,
	FP_TCP_KIND_OTHER,
};

static __always_inline enum fp_tcp_kind fp_tcp_kind(__u8 flags)
{
	switch (flags & (FP_TCP_FIN | FP_TCP_SYN | FP_TCP_RST | FP_TCP_ACK | FP_TCP_URG)) {
	case FP_TCP_ACK:
	case FP_TCP_ACK | FP_TCP_URG:
		return FP_TCP_KIND_DATA;
	case FP_TCP_RST:
	case FP_TCP_RST | FP_TCP_ACK:
	case FP_TCP_FIN | FP_TCP_ACK:
	case FP_TCP_FIN | FP_TCP_ACK | FP_TCP_URG:
		return FP_TCP_KIND_CLOSE;
	}
	return FP_TCP_KIND_OTHER;
}

/* fp_flow_get returns the flow to forward the packet with, or NULL and the
 * reason it goes to the kernel. */
static __always_inline struct fp_flow *fp_flow_get(void *ctx, const int xdp, const struct fp_pkt *p,
						   __u32 ifindex, __u32 slot, __u32 l3_len, __u32 *reason)
{
	const struct fp_state *st = fp_state();
	struct fp_flow *f, *stale = NULL;
	struct fp_flow_key k;
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
			if (f) {
				if (!fp_tcp_in_window(&k, f, p)) {
					*reason = FP_DROP_BIT | FP_DROP_TCP_OUT_OF_WINDOW;
					return NULL;
				}
				fp_flow_evict(&k, f, slot, FP_PASS_TCP_CLOSE);
			}
			*reason = FP_PASS_TCP_CLOSE;
			return NULL;
		default:
			*reason = FP_PASS_TCP_FLAGS;
			return NULL;
		}
	}
	if (f && (f->fib_gen != st->fib_gen || f->fw_gen != st->fw_gen || f->ifindex_in != ifindex ||
		  (f->flags & FP_FLOW_PENDING))) {
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
		struct bpf_ct_opts opts;
		struct nf_conn *ct = fp_ct_lookup(ctx, xdp, &k, &opts);
		int bad;

		if (!ct) {
			*reason = FP_PASS_NO_CONNTRACK;
			bad = 1;
		} else {
			bad = fp_ct_offloadable(ct, k.proto, reason);
			if (!bad)
				fp_ct_refresh(ct, k.proto, st, now - f->created_ns);
			bpf_ct_release(ct);
		}
		if (bad) {
			fp_flow_evict(&k, f, slot, *reason);
			return NULL;
		}
		f->ct_refresh_ns = now;
	}
	if (!f)
		f = fp_flow_fill(ctx, xdp, p, &k, ifindex, slot, l3_len, st, now, stale, reason);
	if (f && f->last_ns != now)
		f->last_ns = now; /* once per tick: the line is shared by CPUs */
	return f;
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

static __always_inline void fp_flow_account(struct fp_flow *f, __u64 bytes)
{
	__sync_fetch_and_add(&f->packets, 1);
	__sync_fetch_and_add(&f->bytes, bytes);
}

/* fp_flow_rewrite_l3 edits MACs, TTL/hop limit and NAT addresses and
 * ports, fixing the IPv4 header checksum. The L4 checksum is left to the
 * caller (XDP edits it in place; TC lets the kernel's helpers handle
 * CHECKSUM_PARTIAL skbs). */
static __always_inline void fp_flow_rewrite_l3(struct fp_pkt *p, const struct fp_flow *f)
{
	fp_forward_l2l3(p, f->dmac, f->smac);
	if (!(f->flags & (FP_FLOW_SNAT | FP_FLOW_DNAT)))
		return;
	if (p->family == AF_INET) {
		struct iphdr *iph = p->l3;

		iph->saddr = f->nat_saddr[0];
		iph->daddr = f->nat_daddr[0];
		iph->check = fp_csum_add(iph->check, f->csum_addr);
	} else {
		struct ipv6hdr *ip6h = p->l3;

		/* proven by fp_parse; again for the verifier, which after the
		 * checksum call can pair an IPv4 proof with this path */
		if ((void *)(ip6h + 1) > p->data_end)
			return;
		__builtin_memcpy(&ip6h->saddr, f->nat_saddr, 16);
		__builtin_memcpy(&ip6h->daddr, f->nat_daddr, 16);
	}
}

/* The L4 checksum field's offset in the L4 header. */
static __always_inline __u32 fp_l4_check_off(__u8 proto)
{
	return proto == IPPROTO_TCP ? offsetof(struct tcphdr, check) : offsetof(struct udphdr, check);
}

/* fp_flow_rewrite_l4_xdp: ports and the L4 checksum, in place. An IPv4 UDP
 * checksum of zero means "none" and stays zero. */
static __always_inline void fp_flow_rewrite_l4_xdp(struct fp_pkt *p, const struct fp_flow *f)
{
	__be16 *ports = p->l4;
	__u16 *check;

	if (!(f->flags & (FP_FLOW_SNAT | FP_FLOW_DNAT)))
		return;
	if (p->l4_proto == IPPROTO_TCP) {
		struct tcphdr *th = p->l4;

		if ((void *)(th + 1) > p->data_end)
			return;
		check = &th->check;
	} else {
		struct udphdr *uh = p->l4;

		if ((void *)(uh + 1) > p->data_end)
			return;
		check = &uh->check;
		/* 0 means "no checksum": the kernel's NAT keeps it, for IPv6 too
		 * (RFC 6935 allows it there for tunnels) */
		if (*check == 0) {
			ports[0] = f->nat_sport;
			ports[1] = f->nat_dport;
			return;
		}
	}
	*check = fp_csum_add(*check, f->csum_addr);
	*check = fp_csum_replace2(*check, ports[0], f->nat_sport);
	*check = fp_csum_replace2(*check, ports[1], f->nat_dport);
	if (*check == 0 && p->l4_proto == IPPROTO_UDP)
		*check = 0xffff; /* 0 would mean "no checksum" */
	ports[0] = f->nat_sport;
	ports[1] = f->nat_dport;
}
