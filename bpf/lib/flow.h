/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Offload mode: the flow cache's entries. What the lookup (offload.h) and
 * the slow paths (fill.h) share: events, eviction, the request the slow
 * paths take, and the rewrite a cached flow carries. */
#pragma once
#include "common.h"
#include "counters.h"
#include "csum.h"
#include "flowkey.h"
#include "forward.h"
#include "parse.h"
#include "tcp.h"

#define FP_CT_REFRESH_NS 1000000000ULL /* refresh conntrack at most once a second per flow */

/* What the slow paths of the flow cache (fill.h: global functions, which
 * take no packet pointers) know of the packet; the caller reads it first. */
struct fp_flow_req {
	struct fp_flow_key k;  /* the packet's flow */
	struct fp_tcp_seg seg; /* TCP: the segment's numbers (fill, close) */
	__u64 now;             /* the packet's coarse clock */
	__u32 ifindex;         /* ingress */
	__u32 slot;            /* the ingress's counters */
	__u32 reason;          /* out: why the packet goes to the kernel (or FP_DROP_BIT | why dropped) */
	__u32 l3_len;          /* fill: the L3 length of each packet that will leave */
	__be32 flowinfo;       /* fill: for the FIB query (fp_fib_query) */
	__u8 tos;
	__u8 ttl;              /* fill: TTL / hop limit as it arrived */
	__u8 pad[2];
};

/* The slow paths' working memory: the request, and for a fill the new
 * entry and its route query (bytes: bpf2go, which writes a Go type for
 * every map value, cannot express the query's anonymous unions). Per CPU,
 * not on the stack: the kernel allows 512 bytes of stack for the whole
 * call chain, and the programs' own frames take most of it. The programs
 * run to the end on their CPU without another of them in between. */
struct fp_slow {
	struct fp_flow_req r;
	struct fp_flow f;
	__u8 fib[sizeof(struct bpf_fib_lookup)];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_slow);
} fp_slow_scratch SEC(".maps");

/* fp_slow_start takes the working memory for a slow path and sets its
 * request up for the packet of key k (the rest is the caller's). NULL
 * only in theory: an array has its element. */
static __always_inline struct fp_slow *fp_slow_start(const struct fp_flow_key *k, __u64 now, __u32 ifindex,
						     __u32 slot)
{
	__u32 zero = 0;
	struct fp_slow *s = bpf_map_lookup_elem(&fp_slow_scratch, &zero);

	if (!s)
		return NULL;
	__builtin_memset(&s->r, 0, sizeof(s->r));
	s->r.k = *k;
	s->r.now = now;
	s->r.ifindex = ifindex;
	s->r.slot = slot;
	return s;
}

/* fp_flow_event_new reserves and fills an event about a flow, to be
 * submitted or discarded; NULL when the ring is full (the caller counts
 * the loss). */
static __always_inline struct fp_event *fp_flow_event_new(__u32 type, __u32 reason, const struct fp_flow_key *k,
							const struct fp_flow *f)
{
	struct fp_event *e = bpf_ringbuf_reserve(&fp_events, sizeof(*e), 0);

	if (!e)
		return NULL;
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
	e->packets = f->packets;
	e->bytes = f->bytes;
	e->created_ns = f->created_ns;
	return e;
}

/* fp_flow_event tells the daemon about a flow; a full ring drops it
 * (counted on slot). */
static __always_inline void fp_flow_event(__u32 type, __u32 reason, const struct fp_flow_key *k,
					  const struct fp_flow *f, __u32 slot)
{
	struct fp_event *e = fp_flow_event_new(type, reason, k, f);

	if (e)
		bpf_ringbuf_submit(e, 0);
	else
		fp_count_event_lost(slot);
}

/* fp_slot_of: the counter slot of a flow's ingress; FP_MAX_IFACES, which
 * counts nowhere, once the interface is no longer managed. */
static __always_inline __u32 fp_slot_of(__u32 ifindex)
{
	struct fp_iface *in = bpf_map_lookup_elem(&fp_ifaces, &ifindex);

	return in ? in->slot : FP_MAX_IFACES;
}

/* fp_flow_remove deletes the cached flow f of key k, counts it on its
 * ingress's slot and, if announce, announces it with reason. The event is
 * filled from the entry before the delete and sent only if the delete was
 * this caller's: another CPU may remove the same flow at the same time. A
 * pending flow was never announced nor counted as added: neither is its
 * removal. 1: removed. */
static __always_inline int fp_flow_remove(const struct fp_flow_key *k, const struct fp_flow *f, __u32 reason,
					  int announce)
{
	__u32 slot = fp_slot_of(f->ifindex_in);
	int pending = f->flags & FP_FLOW_PENDING;
	struct fp_event *e = NULL;

	if (announce && !pending)
		e = fp_flow_event_new(FP_EV_FLOW_DEL, reason, k, f);
	if (bpf_map_delete_elem(&fp_flows, k)) {
		if (e)
			bpf_ringbuf_discard(e, 0);
		return 0;
	}
	if (pending)
		return 1;
	fp_count_flow(slot, 0);
	if (e)
		bpf_ringbuf_submit(e, 0);
	else if (announce)
		fp_count_event_lost(slot);
	return 1;
}

/* fp_flow_evict removes a flow and its other direction, each counted on
 * its own ingress and announced with reason. */
static __always_inline void fp_flow_evict(const struct fp_flow_key *k, const struct fp_flow *f, __u32 reason)
{
	struct fp_flow_key rev;
	struct fp_flow *rf;

	fp_key_reverse(&rev, k, f); /* before f's element is freed by the delete */
	fp_flow_remove(k, f, reason, 1);
	rf = bpf_map_lookup_elem(&fp_flows, &rev);
	if (rf)
		fp_flow_remove(&rev, rf, reason, 1);
}

/* Housekeeping (the idle sweep, conntrack's destroy events) announces
 * removals while the event ring holds less than this: a quarter of it, the
 * rest kept for the packet path's events. */
#define FP_HOUSEKEEPING_EVENTS_MAX_USED (64 * 1024)

static __always_inline int fp_ring_has_room(void)
{
	return bpf_ringbuf_query(&fp_events, BPF_RB_AVAIL_DATA) < FP_HOUSEKEEPING_EVENTS_MAX_USED;
}

/* fp_flow_housekeep removes the cached flow f of key k for housekeeping
 * (the idle sweep, conntrack's events), as fp_flow_remove does, announced
 * only while the ring has room to spare (fp_ring_has_room: a sweep or a
 * conntrack flush brings thousands at once); *quiet counts the removals
 * left unannounced. 1: removed. */
static __always_inline int fp_flow_housekeep(const struct fp_flow_key *k, const struct fp_flow *f, __u32 reason,
					     __u32 *quiet)
{
	int announce = fp_ring_has_room();
	int pending = f->flags & FP_FLOW_PENDING;

	if (!fp_flow_remove(k, f, reason, announce))
		return 0;
	if (!announce && !pending)
		*quiet += 1;
	return 1;
}

/* fp_flow_forget removes the one cached flow of key k, if there is one
 * (fp_flow_housekeep). 1: removed. */
static __always_inline int fp_flow_forget(const struct fp_flow_key *k, __u32 reason, __u32 *quiet)
{
	struct fp_flow *f = bpf_map_lookup_elem(&fp_flows, k);

	return f ? fp_flow_housekeep(k, f, reason, quiet) : 0;
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

/* fp_sweep_one: fp_sweep_idle's callback (fastpath.bpf.c), one cached
 * flow. The walk may miss or revisit an entry the packet path changes
 * meanwhile: idle expiry is housekeeping (the LRU and conntrack's destroy
 * events are what bound the cache), so best effort is enough. A removal is
 * announced only while the event ring has room to spare: a sweep of many
 * flows would otherwise fill it and the packet path's own events (a flow
 * added, a flow waiting to be made liberal) would be lost; the rest are
 * counted in unannounced. */
struct bpf_map; /* opaque: the callback only hands it back to the map helpers */

struct fp_sweep_args {
	__u64 older_than_ns;
	__u32 scanned;
	__u32 expired;
	__u32 unannounced; /* expired without a flow_removed event: the ring was busy */
	__u32 pad;
};

static long fp_sweep_one(struct bpf_map *map, struct fp_flow_key *k, struct fp_flow *f, struct fp_sweep_args *a)
{
	a->scanned++;
	if (f->last_ns < a->older_than_ns && fp_flow_housekeep(k, f, FP_DEL_IDLE, &a->unannounced))
		a->expired++;
	return 0;
}

/* fp_forget_args: the two directions of a connection conntrack destroyed
 * (changed 0) or another program changed (changed 1), for fp_forget;
 * removed is set to how many were cached. */
struct fp_forget_args {
	struct fp_flow_key k[2];
	__u32 changed;
	__u32 removed;
	__u32 unannounced; /* removed without a flow_removed event: the ring was busy */
	__u32 pad;
};
