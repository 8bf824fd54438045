/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* The guard: the first stage of the XDP and TC programs, in every mode. It
 * only drops or passes on, never forwards: deny and allow lists of source
 * prefixes, per-source rate limits (packets, bytes, SYNs, new flows) and
 * totals for SYNs and new flows. Runtime knobs live in fp_guard_cfg; with
 * nothing configured it costs one array lookup. See docs/guard.md. */
#pragma once
#include "common.h"
#include "conntrack.h"
#include "flowkey.h"
#include "kernel.h"
#include "parse.h"

#define FP_GUARD_LIST_ENTRIES (1 << 18) /* per list and family */
#define FP_GUARD_SOURCES 65536          /* per-source buckets (LRU) */
#define FP_GUARD_TOP 4096               /* dropped sources kept for `top` (LRU) */
#define FP_GUARD_TOP_SAMPLE 16          /* one drop in 16 per CPU feeds the top map (and stores a new source's bucket) */
#define FP_GUARD_KNOWN 65536            /* sources that had an established flow (LRU) */
#define FP_GUARD_KNOWN_REFRESH_NS 1000000000ULL /* a known source's time is rewritten at most once a second */
#define FP_GUARD_PRESSURE_NS 1000000000ULL      /* pressure lasts this long after the last attempt over the total */

/* Why the guard dropped a packet. The Go side reads the names from BTF. */
enum fp_guard_reason {
	FP_GUARD_DENY = 0,     /* source in the deny list (and not in the allow list) */
	FP_GUARD_RATE_PKT,     /* source over its packets/s */
	FP_GUARD_RATE_BYTE,    /* source over its bytes/s */
	FP_GUARD_SYN_SOURCE,   /* source over its SYNs/s */
	FP_GUARD_SYN_TOTAL,    /* all sources together over the SYNs/s */
	FP_GUARD_NEW_SOURCE,   /* source over its new flows/s */
	FP_GUARD_NEW_TOTAL,    /* all sources together over the new flows/s */
	FP_GUARD_NEW_UNKNOWN,  /* new flows over the total: a source that never had an established flow */
	FP_GUARD_MAX,
};

enum fp_guard_flags {
	FP_GUARD_F_ALLOW = 1, /* the allow lists have entries */
	FP_GUARD_F_DENY = 2,  /* the deny lists have entries */
};

/* A limit as the generic cell rate algorithm keeps it: cost_ns of time per
 * packet (or per byte << 16), burst_ns of credit. cost_ns 0: no limit. */
struct fp_guard_limit {
	__u64 cost_ns;
	__u64 burst_ns;
};

/* The guard's configuration, written by the daemon. */
struct fp_guard_cfg {
	__u32 flags;        /* enum fp_guard_flags */
	__u8 prefix4;       /* source prefix length one bucket covers */
	__u8 prefix6;
	__u16 pad;
	struct fp_guard_limit pkt;      /* per source, per packet */
	struct fp_guard_limit byte;     /* per source, cost_ns per byte << 16 */
	struct fp_guard_limit syn;      /* per source */
	struct fp_guard_limit new_flow; /* per source */
	struct fp_guard_limit syn_all;  /* every CPU's share of the total */
	struct fp_guard_limit new_all;
	__u64 event_ns;     /* a drop event at most this often per CPU; 0: none */
	__u64 gen;          /* bumped when a total changes: the totals and the pressure start afresh */
};

/* Key of the per-source maps: the source masked to its bucket prefix. */
struct fp_guard_src {
	__u32 family;
	__be32 addr[4];
};

/* A source's buckets: theoretical arrival times (GCRA). */
struct fp_guard_bucket {
	__u64 tat_pkt;
	__u64 tat_byte;
	__u64 tat_syn;
	__u64 tat_new;
};

/* A dropped source, for `fastpath guard top`. Updated atomically. */
struct fp_guard_top {
	__u64 packets;
	__u64 bytes;
	__u32 reason; /* the last drop's */
	__u32 pad;
};

/* Hits of one list entry, updated atomically. */
struct fp_guard_hits {
	__u64 packets;
	__u64 bytes;
};

/* Per-CPU counters of one ingress interface, by its slot. */
struct fp_guard_stats {
	__u64 drop_packets[FP_GUARD_MAX];
	__u64 drop_bytes[FP_GUARD_MAX];
	__u64 allowed;     /* packets the allow list exempted */
	__u64 events_lost; /* drop events lost to a full ring */
};

/* Per-CPU state: the CPU's share of the totals and its sampling clocks.
 * tat_press meters every new-flow attempt at the CPU's share of the total;
 * one over it puts every CPU under pressure (fp_guard_press). */
struct fp_guard_cpu {
	__u64 tat_syn;
	__u64 tat_new;
	__u64 last_event_ns;
	__u64 drops; /* for sampling the top map and bucket stores */
	__u64 tat_press;
	__u64 gen;   /* the config's gen the totals above belong to */
	struct fp_guard_bucket fresh; /* a new source's bucket until stored (the stack is full) */
};

/* Until when every CPU is under pressure of new flows (bpf_ktime_get_ns),
 * under the config of generation gen (another gen: no pressure). */
struct fp_guard_pressure {
	__u64 until;
	__u64 gen;
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_guard_cfg);
} fp_guard_conf SEC(".maps");

#define FP_GUARD_LPM(name, ktype)                                  \
	struct {                                                 \
		__uint(type, BPF_MAP_TYPE_LPM_TRIE);             \
		__uint(max_entries, FP_GUARD_LIST_ENTRIES);      \
		__type(key, struct ktype);                         \
		__type(value, struct fp_guard_hits);             \
		__uint(map_flags, BPF_F_NO_PREALLOC);            \
	} name SEC(".maps")

FP_GUARD_LPM(fp_guard_allow4, fp_lpm4);
FP_GUARD_LPM(fp_guard_allow6, fp_lpm6);
FP_GUARD_LPM(fp_guard_deny4, fp_lpm4);
FP_GUARD_LPM(fp_guard_deny6, fp_lpm6);

/* Shared by CPUs, updated without locks: see docs/guard.md for what that
 * costs in accuracy. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FP_GUARD_SOURCES);
	__type(key, struct fp_guard_src);
	__type(value, struct fp_guard_bucket);
	__uint(map_flags, BPF_F_NO_COMMON_LRU); /* per-CPU LRU lists: no global lock on insert */
} fp_guard_srcs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FP_GUARD_TOP);
	__type(key, struct fp_guard_src);
	__type(value, struct fp_guard_top);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
} fp_guard_tops SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_guard_cpu);
} fp_guard_cpus SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, FP_MAX_IFACES);
	__type(key, __u32);
	__type(value, struct fp_guard_stats);
} fp_guard_cnt SEC(".maps");

/* Sources that have had an established TCP connection (the guard's
 * conntrack lookup found one, or fastpath cached one). Under pressure of
 * new flows only they may start new ones: a flood from spoofed sources
 * then adds nothing to conntrack. The value, when last noted (coarse
 * clock), is for inspection (bpftool); the LRU's order forgets. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, FP_GUARD_KNOWN);
	__type(key, struct fp_guard_src);
	__type(value, __u64);
} fp_guard_known SEC(".maps");

/* The pressure: one CPU over its share is enough, wherever the flood lands
 * next. Shared, so written at most twice a second. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_guard_pressure);
} fp_guard_press SEC(".maps");

/* What the guard reads of a packet. */
struct fp_guard_pkt {
	struct fp_flow_key k; /* ports 0 unless l4 */
	__u8 l4;              /* TCP/UDP header read (not a fragment, no extension header) */
	__u8 tcp_flags;
};

/* fp_guard_parse reads Ethernet, up to two VLAN tags, the IP addresses
 * and, when they are there, the TCP/UDP ports and TCP flags. -1: not IP (or
 * too short to say), which the guard passes on. */
static __always_inline int fp_guard_parse(void *data, void *data_end, struct fp_guard_pkt *g)
{
	struct ethhdr *eth = data;
	void *cur = eth + 1, *l4 = 0;
	__u16 proto;
	int i;

	if (cur > data_end)
		return -1;
	proto = eth->h_proto;
#pragma unroll
	for (i = 0; i < FP_MAX_VLAN_TAGS; i++) {
		struct vlan_hdr *vh = cur;

		if (proto != bpf_htons(ETH_P_8021Q) && proto != bpf_htons(ETH_P_8021AD))
			break;
		if ((void *)(vh + 1) > data_end)
			return -1;
		proto = vh->proto;
		cur = vh + 1;
	}
	g->l4 = 0;
	g->tcp_flags = 0;
	if (proto == bpf_htons(ETH_P_IP)) {
		struct iphdr *iph = cur;

		if ((void *)(iph + 1) > data_end)
			return -1;
		fp_key_of_l3(&g->k, AF_INET, iph->protocol, iph, data_end);
		if (!(iph->frag_off & bpf_htons(0x3fff)) && iph->ihl >= 5)
			l4 = cur + iph->ihl * 4;
	} else if (proto == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6h = cur;

		if ((void *)(ip6h + 1) > data_end)
			return -1;
		fp_key_of_l3(&g->k, AF_INET6, ip6h->nexthdr, ip6h, data_end);
		l4 = ip6h + 1;
	} else {
		return -1;
	}
	if (!l4)
		return 0;
	if (g->k.proto == IPPROTO_TCP) {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > data_end)
			return 0;
		g->k.sport = th->source;
		g->k.dport = th->dest;
		g->tcp_flags = ((__u8 *)th)[13];
		g->l4 = 1;
	} else if (g->k.proto == IPPROTO_UDP) {
		struct udphdr *uh = l4;

		if ((void *)(uh + 1) > data_end)
			return 0;
		g->k.sport = uh->source;
		g->k.dport = uh->dest;
		g->l4 = 1;
	}
	return 0;
}

/* fp_guard_lookup looks the source up in the list of its family. */
static __always_inline struct fp_guard_hits *fp_guard_lookup(const struct fp_flow_key *k, void *map4, void *map6)
{
	if (k->family == AF_INET) {
		struct fp_lpm4 key = {.prefixlen = 32, .addr = k->saddr[0]};

		return bpf_map_lookup_elem(map4, &key);
	}
	struct fp_lpm6 key = {.prefixlen = 128};

	__builtin_memcpy(key.addr, k->saddr, 16);
	return bpf_map_lookup_elem(map6, &key);
}

/* fp_guard_now: the clock, read once per packet and only when a limit or
 * a drop needs it (*now 0 until then): in a VM a precise clock read costs
 * as much as a hash lookup, and most packets need none. */
static __always_inline __u64 fp_guard_now(__u64 *now)
{
	if (!*now)
		*now = bpf_ktime_get_ns();
	return *now;
}

/* fp_gcra: one packet of cost against a limit. The bucket's arrival time
 * is read and written without a lock: two CPUs passing the same source at
 * the same instant may both spend the same credit (docs/guard.md). */
static __always_inline int fp_gcra(__u64 *tat, __u64 now, __u64 cost, __u64 burst)
{
	__u64 t = *tat;

	if ((__s64)(t - now) < 0)
		t = now;
	/* Only a lowered burst (the limit raised, or a smaller burst configured)
	 * leaves a bucket further ahead than a full one: it is brought back, so
	 * the new limit holds from now, not after the old one's backlog. */
	if (t - now > burst)
		*tat = t = now + burst;
	if (t + cost - now > burst)
		return -1;
	*tat = t + cost;
	return 0;
}

static __always_inline void fp_guard_src_of(struct fp_guard_src *s, const struct fp_flow_key *k,
					    const struct fp_guard_cfg *c)
{
	__u32 plen = k->family == AF_INET ? c->prefix4 : c->prefix6;
	int i;

	__builtin_memset(s, 0, sizeof(*s));
	s->family = k->family;
#pragma unroll
	for (i = 0; i < 4; i++) {
		__u32 bits = plen > (__u32)i * 32 ? plen - i * 32 : 0;

		if (bits >= 32)
			s->addr[i] = k->saddr[i];
		else if (bits)
			s->addr[i] = k->saddr[i] & bpf_htonl(~0U << (32 - bits));
	}
}

/* fp_guard_active: whether the guard has anything to do. With nothing
 * configured it costs this one array lookup, inline; the checks
 * themselves run in a global function of each program (xdp.h, tc.h). */
static __always_inline int fp_guard_active(const struct fp_guard_cfg *c)
{
	return c && (c->flags | c->pkt.cost_ns | c->byte.cost_ns | c->syn.cost_ns | c->new_flow.cost_ns |
		     c->syn_all.cost_ns | c->new_all.cost_ns);
}

/* fp_guard_known_key: a source as the known map keys it, /32 for IPv4 and
 * /64 for IPv6 whatever the per-source prefixes (a changed prefix must not
 * make every source unknown). */
static __always_inline void fp_guard_known_key(struct fp_guard_src *s, const struct fp_flow_key *k)
{
	__builtin_memset(s, 0, sizeof(*s));
	s->family = k->family;
	s->addr[0] = k->saddr[0];
	if (k->family == AF_INET6)
		s->addr[1] = k->saddr[1];
}

/* fp_guard_know notes k's source as one with an established TCP
 * connection, when the guard is on (nothing else reads the mark). */
static __always_inline void fp_guard_know(const struct fp_flow_key *k, const struct fp_guard_cfg *c)
{
	struct fp_guard_src src;
	__u64 now, *seen;

	if (!fp_guard_active(c))
		return;
	fp_guard_known_key(&src, k);
	now = bpf_ktime_get_coarse_ns();
	seen = bpf_map_lookup_elem(&fp_guard_known, &src);
	if (!seen) {
		bpf_map_update_elem(&fp_guard_known, &src, &now, BPF_NOEXIST);
		return;
	}
	if (now - *seen >= FP_GUARD_KNOWN_REFRESH_NS)
		*seen = now;
}

/* fp_guard_is_new: would the packet, not a SYN (the caller counts those
 * as new by their flags), create a conntrack entry? A TCP or UDP packet of
 * a flow neither the flow cache nor conntrack knows does (conntrack picks
 * up TCP mid-stream by default). Anything else (ICMP, fragments, extension
 * headers) is not judged here. */
static __always_inline int fp_guard_is_new(void *ctx, const int xdp, const struct fp_guard_pkt *g,
					   const struct fp_guard_cfg *c, __u32 mode)
{
	struct bpf_ct_opts opts;
	struct nf_conn *ct;

	if (!g->l4)
		return 0;
	/* the flow cache answers for offloaded flows without asking
	 * conntrack; it holds none of another mode's */
	if (mode == FP_MODE_OFFLOAD && bpf_map_lookup_elem(&fp_flows, &g->k))
		return 0;
	ct = fp_ct_lookup(ctx, xdp, &g->k, &opts);
	if (!ct)
		return 1;
	/* Known: a TCP connection whose handshake completed, which takes
	 * the server's sequence number: a spoofed source never sees it. A
	 * UDP answer proves nothing (the spoofer need not see it). */
	if (g->k.proto == IPPROTO_TCP && (ct->status & IPS_ASSURED) &&
	    ct->proto.tcp.state == TCP_CONNTRACK_ESTABLISHED)
		fp_guard_know(&g->k, c);
	bpf_ct_release(ct);
	return 0;
}

/* fp_guard_drop counts a drop, notes the source among the top dropped and
 * samples it into the event ring. */
static __always_inline void fp_guard_drop(const struct fp_guard_cfg *c, struct fp_guard_cpu *cpu,
					  const struct fp_guard_pkt *g, __u32 reason, __u64 bytes, __u32 ifindex,
					  __u32 slot, __u64 now, int sample)
{
	struct fp_guard_stats *s = bpf_map_lookup_elem(&fp_guard_cnt, &slot);
	struct fp_guard_src src;
	struct fp_guard_top *t;

	if (reason >= FP_GUARD_MAX)
		return;
	if (s) {
		s->drop_packets[reason]++;
		s->drop_bytes[reason] += bytes;
	}
	/* Sampled (the caller's sample: every 16th drop of a CPU), each
	 * counted 16 times: under a spoofed flood each touch of the map is a
	 * cache miss (and an insert an LRU eviction), which would cost more
	 * than the drop's other work; a source making up a share s of a
	 * CPU's drops shows after about 16/s of them. */
	if (sample) {
		fp_guard_src_of(&src, &g->k, c);
		t = bpf_map_lookup_elem(&fp_guard_tops, &src);
		if (t) {
			__sync_fetch_and_add(&t->packets, FP_GUARD_TOP_SAMPLE);
			__sync_fetch_and_add(&t->bytes, bytes * FP_GUARD_TOP_SAMPLE);
			t->reason = reason;
		} else {
			struct fp_guard_top n = {.packets = FP_GUARD_TOP_SAMPLE,
						 .bytes = bytes * FP_GUARD_TOP_SAMPLE, .reason = reason};

			bpf_map_update_elem(&fp_guard_tops, &src, &n, BPF_NOEXIST);
		}
	}
	if (cpu && c->event_ns && now - cpu->last_event_ns >= c->event_ns) {
		struct fp_event *e = bpf_ringbuf_reserve(&fp_events, sizeof(*e), 0);

		cpu->last_event_ns = now;
		if (!e) {
			if (s)
				s->events_lost++;
			return;
		}
		__builtin_memset(e, 0, sizeof(*e));
		e->ts_ns = now;
		e->type = FP_EV_GUARD_DROP;
		e->reason = reason;
		e->ifindex_in = ifindex;
		e->key = g->k;
		bpf_ringbuf_submit(e, 0);
	}
}


static __always_inline const struct fp_guard_cfg *fp_guard_conf_get(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&fp_guard_conf, &zero);
}

/* fp_guard decides whether a packet arriving on a managed interface may go
 * on (0) or is dropped (1). pkts is how many packets it carries (a GRO
 * aggregate in TC carries several). In route mode the datapath forwards
 * without conntrack: no packet there counts as a new flow. */
static __always_inline int fp_guard(void *ctx, const int xdp, void *data, void *data_end, __u64 bytes, __u32 pkts,
				    __u32 ifindex, __u32 slot, __u32 mode)
{
	const struct fp_guard_cfg *c = fp_guard_conf_get();
	__u32 zero = 0, reason;
	struct fp_guard_cpu *cpu;
	struct fp_guard_bucket *b = NULL, *fresh = NULL;
	struct fp_guard_hits *hit;
	struct fp_guard_pkt g;
	struct fp_guard_src src;
	int syn, sample;
	__u64 now = 0;

	if (!fp_guard_active(c))
		return 0;
	if (fp_guard_parse(data, data_end, &g))
		return 0;
	if (c->flags & FP_GUARD_F_ALLOW) {
		hit = fp_guard_lookup(&g.k, &fp_guard_allow4, &fp_guard_allow6);
		if (hit) {
			struct fp_guard_stats *s = bpf_map_lookup_elem(&fp_guard_cnt, &slot);

			__sync_fetch_and_add(&hit->packets, pkts);
			__sync_fetch_and_add(&hit->bytes, bytes);
			if (s)
				s->allowed += pkts;
			return 0; /* allowed: exempt from the deny list and every limit */
		}
	}
	cpu = bpf_map_lookup_elem(&fp_guard_cpus, &zero);
	/* A changed total starts afresh here, at the CPU's next packet:
	 * none of the old one's debt (the pressure checks gen itself). */
	if (cpu && cpu->gen != c->gen) {
		cpu->tat_syn = 0;
		cpu->tat_new = 0;
		cpu->tat_press = 0;
		cpu->gen = c->gen;
	}
	if (c->flags & FP_GUARD_F_DENY) {
		hit = fp_guard_lookup(&g.k, &fp_guard_deny4, &fp_guard_deny6);
		if (hit) {
			__sync_fetch_and_add(&hit->packets, pkts);
			__sync_fetch_and_add(&hit->bytes, bytes);
			reason = FP_GUARD_DENY;
			goto drop;
		}
	}
	if (c->pkt.cost_ns | c->byte.cost_ns | c->syn.cost_ns | c->new_flow.cost_ns) {
		fp_guard_src_of(&src, &g.k, c);
		b = bpf_map_lookup_elem(&fp_guard_srcs, &src);
		/* A new source's bucket is stored when a packet of it goes on,
		 * or on a sampled drop: a spoofed flood the totals drop then
		 * costs an LRU insert (and a real source's bucket evicted) per
		 * 16 packets instead of per packet, while a source that keeps
		 * sending gets its bucket, and its limits, within about 16 of
		 * its drops. Until then it is judged on a fresh bucket. */
		if (!b && cpu) {
			fresh = b = &cpu->fresh;
			__builtin_memset(fresh, 0, sizeof(*fresh));
		}
	}
	if (b && c->pkt.cost_ns && fp_gcra(&b->tat_pkt, fp_guard_now(&now), c->pkt.cost_ns * pkts, c->pkt.burst_ns)) {
		reason = FP_GUARD_RATE_PKT;
		goto drop;
	}
	if (b && c->byte.cost_ns && fp_gcra(&b->tat_byte, fp_guard_now(&now), (bytes * c->byte.cost_ns) >> 16, c->byte.burst_ns)) {
		reason = FP_GUARD_RATE_BYTE;
		goto drop;
	}
	syn = g.l4 && g.k.proto == IPPROTO_TCP && (g.tcp_flags & (FP_TCP_SYN | FP_TCP_ACK)) == FP_TCP_SYN;
	if (syn && b && c->syn.cost_ns && fp_gcra(&b->tat_syn, fp_guard_now(&now), c->syn.cost_ns, c->syn.burst_ns)) {
		reason = FP_GUARD_SYN_SOURCE;
		goto drop;
	}
	if (syn && cpu && c->syn_all.cost_ns && fp_gcra(&cpu->tat_syn, fp_guard_now(&now), c->syn_all.cost_ns, c->syn_all.burst_ns)) {
		reason = FP_GUARD_SYN_TOTAL;
		goto drop;
	}
	if (!(c->new_flow.cost_ns | c->new_all.cost_ns) || mode == FP_MODE_ROUTE)
		goto pass;
	if (!syn && !fp_guard_is_new(ctx, xdp, &g, c, mode))
		goto pass;
	if (b && c->new_flow.cost_ns && fp_gcra(&b->tat_new, fp_guard_now(&now), c->new_flow.cost_ns, c->new_flow.burst_ns)) {
		reason = FP_GUARD_NEW_SOURCE;
		goto drop;
	}
	if (cpu && c->new_all.cost_ns) {
		struct fp_guard_src src_known;
		struct fp_guard_pressure *press = bpf_map_lookup_elem(&fp_guard_press, &zero);

		/* Every attempt is metered; attempts over the total's rate mean
		 * more are coming than it admits (a flood), and for a while
		 * only sources known to have had established TCP connections
		 * may spend it: spoofed sources never complete a handshake. */
		if (fp_gcra(&cpu->tat_press, fp_guard_now(&now), c->new_all.cost_ns, c->new_all.burst_ns) && press &&
		    (press->gen != c->gen || (__s64)(press->until - now) < (__s64)(FP_GUARD_PRESSURE_NS / 2))) {
			press->until = now + FP_GUARD_PRESSURE_NS;
			press->gen = c->gen;
		}
		if (press && press->gen == c->gen && (__s64)(press->until - now) > 0) {
			fp_guard_known_key(&src_known, &g.k);
			if (!bpf_map_lookup_elem(&fp_guard_known, &src_known)) {
				reason = FP_GUARD_NEW_UNKNOWN;
				goto drop;
			}
		}
		if (fp_gcra(&cpu->tat_new, now, c->new_all.cost_ns, c->new_all.burst_ns)) {
			reason = FP_GUARD_NEW_TOTAL;
			goto drop;
		}
	}
pass:
	if (fresh)
		bpf_map_update_elem(&fp_guard_srcs, &src, fresh, BPF_NOEXIST);
	return 0;
drop:
	sample = cpu && cpu->drops++ % FP_GUARD_TOP_SAMPLE == 0;
	if (fresh && sample)
		bpf_map_update_elem(&fp_guard_srcs, &src, fresh, BPF_NOEXIST);
	fp_guard_drop(c, cpu, &g, reason, bytes, ifindex, slot, fp_guard_now(&now), sample);
	return 1;
}

/* As fp_btf_types: puts the guard's types in BTF for bpf2go and the daemon
 * (the drop reason names come from enum fp_guard_reason). Never read. */
struct fp_guard_btf_types {
	enum fp_guard_reason reason;
	enum fp_guard_flags flags;
};
const volatile struct fp_guard_btf_types fp_guard_btf_types;
