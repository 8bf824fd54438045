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
	__u8 pad[3];
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
	e->packets = f->packets;
	e->bytes = f->bytes;
	e->created_ns = f->created_ns;
	bpf_ringbuf_submit(e, 0);
}

/* fp_flow_evict removes a flow and its other direction. */
static __always_inline void fp_flow_evict(const struct fp_flow_key *k, const struct fp_flow *f, __u32 slot,
					  __u32 reason)
{
	struct fp_flow gone = *f; /* f's element is freed by the delete */
	struct fp_flow_key rev;

	fp_key_reverse(&rev, k, f);
	/* a pending flow was never added: nothing to announce */
	if (bpf_map_delete_elem(&fp_flows, k) == 0 && !(gone.flags & FP_FLOW_PENDING)) {
		fp_count_flow(slot, 0);
		fp_flow_event(FP_EV_FLOW_DEL, reason, k, &gone, slot);
	}
	bpf_map_delete_elem(&fp_flows, &rev);
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
 * events are what bound the cache), so best effort is enough. */
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
