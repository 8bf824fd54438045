/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* TCP on an offloaded flow: what a segment's flags make of it, and the
 * sequence space each direction allows the other.
 *
 * conntrack, window-liberal for an offloaded flow (see docs/offload.md),
 * would accept any FIN or RST; without fastpath it would call one outside
 * the window INVALID and keep the connection. Each direction's entry keeps
 * the furthest edge it allowed the other side to send up to (ack + window
 * << scale, conntrack's td_maxend) as the ack and window that set it; a FIN
 * or RST is checked against the other direction's entry. */
#pragma once
#include "common.h"
#include "kernel.h"
#include "parse.h"

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
 * FIN or RST of the other side look out of window). On the hit path of
 * every TCP segment: inline. */
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

/* A segment as the slow paths (fill, close) need it: they run as global
 * functions, which take no packet pointers, so the caller reads it first. */
struct fp_tcp_seg {
	__u32 seq;
	__u32 end; /* seq + payload length + FIN */
	__u32 ack;
	__u16 win;
	__u16 pad;
};

/* fp_tcp_seg_of reads the segment's numbers into s (zeroed: left so if
 * the header were not there, which fp_parse already excluded). */
static __always_inline void fp_tcp_seg_of(struct fp_tcp_seg *s, const struct fp_pkt *p)
{
	struct tcphdr *th = fp_tcp_hdr(p);

	if (!th)
		return;
	s->seq = bpf_ntohl(th->seq);
	s->end = s->seq + (p->tot_len - (__u32)(p->l4 - p->l3) - p->l4_hdr_len) +
		 ((p->tcp_flags & FP_TCP_FIN) ? 1 : 0);
	s->ack = bpf_ntohl(th->ack_seq);
	s->win = bpf_ntohs(th->window);
}

/* fp_tcp_init fills a TCP flow's tracking when it is cached: the window
 * scale conntrack learnt from the handshake (when no SYN it saw carried
 * one, it may have picked the connection up mid-stream: then the largest,
 * so no real FIN or RST is refused), the segment's own ack and window,
 * widened to the furthest edge conntrack or the stale entry knew. */
static __always_inline void fp_tcp_init(struct fp_flow *f, const struct nf_conn *ct, __u8 dir,
					const struct fp_tcp_seg *seg, const struct fp_flow *prev)
{
	__u8 flags0 = ct->proto.tcp.seen[0].flags, flags1 = ct->proto.tcp.seen[1].flags;
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
	f->tcp_ack = seg->ack;
	f->tcp_win = seg->win;
	fp_tcp_widen(f, ct_edge);
	if (prev)
		fp_tcp_widen(f, fp_tcp_edge(prev));
}

/* fp_tcp_in_window: 0 when a FIN or RST is, for certain, outside the
 * window the other direction (r, its cached entry) advertised, as
 * conntrack with its window would judge it (tcp_in_window: the sequence
 * number at most the edge, the end no more than a window below); 1 when in
 * the window or when the other direction is not cached (nothing known: the
 * kernel decides, as before). */
static __always_inline int fp_tcp_in_window(const struct fp_flow *r, const struct fp_tcp_seg *seg)
{
	__u32 win, edge;

	if (!r)
		return 1;
	win = (__u32)r->tcp_win << (r->tcp_wscale & 15);
	edge = r->tcp_ack + win;
	if ((__s32)(seg->seq - edge) > 0)
		return 0;
	if ((__s32)(seg->end - (r->tcp_ack - win)) < 0)
		return 0;
	return 1;
}
