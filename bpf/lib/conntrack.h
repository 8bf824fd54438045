/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Conntrack from the datapath: look up the kernel's entry for a packet,
 * decide whether it may be offloaded, and read the NAT it implies. */
#pragma once
#include "common.h"
#include "kernel.h"

/* fp_ct_lookup finds the conntrack entry of the flow key (either direction).
 * The caller must bpf_ct_release a non-NULL result. xdp is a compile-time
 * constant: each program calls the kfunc of its own context type. */
static __always_inline struct nf_conn *fp_ct_lookup(void *ctx, const int xdp, const struct fp_flow_key *k,
						    struct bpf_ct_opts *opts)
{
	struct bpf_sock_tuple t = {};
	__u32 tlen;

	if (k->family == AF_INET) {
		t.ipv4.saddr = k->saddr[0];
		t.ipv4.daddr = k->daddr[0];
		t.ipv4.sport = k->sport;
		t.ipv4.dport = k->dport;
		tlen = sizeof(t.ipv4);
	} else {
		__builtin_memcpy(t.ipv6.saddr, k->saddr, 16);
		__builtin_memcpy(t.ipv6.daddr, k->daddr, 16);
		t.ipv6.sport = k->sport;
		t.ipv6.dport = k->dport;
		tlen = sizeof(t.ipv6);
	}
	__builtin_memset(opts, 0, sizeof(*opts));
	opts->netns_id = BPF_F_CURRENT_NETNS;
	opts->l4proto = k->proto;
	if (xdp)
		return bpf_xdp_ct_lookup(ctx, &t, tlen, opts, sizeof(*opts));
	return bpf_skb_ct_lookup(ctx, &t, tlen, opts, sizeof(*opts));
}

/* fp_ct_offloadable: only confirmed, established entries with nothing that
 * needs the kernel to see every packet (helpers, expectations, TCP
 * sequence adjustment). */
static __always_inline int fp_ct_offloadable(const struct nf_conn *ct, __u8 proto, __u32 *reason)
{
	unsigned long status = ct->status;
	struct nf_ct_ext *ext;

	if (!(status & IPS_CONFIRMED) || (status & IPS_DYING)) {
		*reason = FP_PASS_NOT_ESTABLISHED;
		return -1;
	}
	if ((status & (IPS_HELPER | IPS_SEQ_ADJUST | IPS_EXPECTED)) || ct->master) {
		*reason = FP_PASS_CT_HELPER;
		return -1;
	}
	ext = ct->ext;
	if (ext && ext->offset[NF_CT_EXT_HELPER]) {
		*reason = FP_PASS_CT_HELPER;
		return -1;
	}
	if (proto == IPPROTO_TCP) {
		if (!(status & IPS_ASSURED) || ct->proto.tcp.state != TCP_CONNTRACK_ESTABLISHED) {
			*reason = FP_PASS_NOT_ESTABLISHED;
			return -1;
		}
	} else if (!(status & IPS_SEEN_REPLY)) {
		*reason = FP_PASS_NOT_ESTABLISHED;
		return -1;
	}
	return 0;
}

#define FP_CT_TCP_BE_LIBERAL 0x08 /* IP_CT_TCP_FLAG_BE_LIBERAL */

/* fp_ct_liberal: conntrack accepts any sequence number in both directions
 * of this TCP entry. Offloaded segments bypass its window tracking, so a
 * packet of the flow that reaches the kernel later (a FIN, a fragment, any
 * packet while the cache is stale) would otherwise look out of window:
 * INVALID, not un-NATed, answered with a RST. A flow is offloaded only once
 * its entry is liberal; the daemon makes it so through ctnetlink. */
static __always_inline int fp_ct_liberal(const struct nf_conn *ct)
{
	return (ct->proto.tcp.seen[0].flags & ct->proto.tcp.seen[1].flags & FP_CT_TCP_BE_LIBERAL) != 0;
}

/* fp_ct_refresh keeps an offloaded flow's entry as the kernel would if it
 * saw the packets (offloaded packets do not reach conntrack): a UDP flow
 * replied to and alive for 2 s becomes ASSURED (a stream: the kernel's rule,
 * and the bit that protects it from early drop), and the timeout is renewed
 * with the namespace's own value for the state. age_ns is the flow's age. */
static __always_inline void fp_ct_refresh(struct nf_conn *ct, __u8 proto, const struct fp_state *st, __u64 age_ns)
{
	unsigned long status = ct->status;
	__u32 ms;

	if (proto == IPPROTO_UDP && !(status & IPS_ASSURED) && age_ns > FP_UDP_STREAM_NS &&
	    bpf_ct_change_status(ct, status | IPS_ASSURED) == 0)
		status |= IPS_ASSURED;
	if (proto == IPPROTO_TCP)
		ms = st->tcp_timeout_ms;
	else if (status & IPS_ASSURED)
		ms = st->udp_stream_timeout_ms;
	else
		ms = st->udp_timeout_ms;
	if (ms)
		bpf_ct_change_timeout(ct, ms);
}

/* The packet after NAT is the other direction's tuple turned around: its
 * source is the other tuple's destination and vice versa. Array indexes are
 * constants so CO-RE can relocate them. */
#define FP_CT_NAT_FROM(f, ct, i)                                               \
	do {                                                                   \
		const struct nf_conntrack_tuple *o = &(ct)->tuplehash[i].tuple;\
		(f)->nat_saddr[0] = o->dst.u3.all[0];                          \
		(f)->nat_saddr[1] = o->dst.u3.all[1];                          \
		(f)->nat_saddr[2] = o->dst.u3.all[2];                          \
		(f)->nat_saddr[3] = o->dst.u3.all[3];                          \
		(f)->nat_daddr[0] = o->src.u3.all[0];                          \
		(f)->nat_daddr[1] = o->src.u3.all[1];                          \
		(f)->nat_daddr[2] = o->src.u3.all[2];                          \
		(f)->nat_daddr[3] = o->src.u3.all[3];                          \
		(f)->nat_sport = o->dst.u.all;                                 \
		(f)->nat_dport = o->src.u.all;                                 \
	} while (0)

static __always_inline void fp_ct_nat(struct fp_flow *f, const struct nf_conn *ct, __u8 dir,
				      const struct fp_flow_key *k)
{
	if (dir) {
		FP_CT_NAT_FROM(f, ct, 0);
		f->flags |= FP_FLOW_REPLY;
	} else {
		FP_CT_NAT_FROM(f, ct, 1);
	}
	if (k->family == AF_INET) {
		/* only word 0 is an IPv4 address; keep keys and compares exact */
		f->nat_saddr[1] = f->nat_saddr[2] = f->nat_saddr[3] = 0;
		f->nat_daddr[1] = f->nat_daddr[2] = f->nat_daddr[3] = 0;
	}
	if (__builtin_memcmp(f->nat_saddr, k->saddr, 16) || f->nat_sport != k->sport)
		f->flags |= FP_FLOW_SNAT;
	if (__builtin_memcmp(f->nat_daddr, k->daddr, 16) || f->nat_dport != k->dport)
		f->flags |= FP_FLOW_DNAT;
}
