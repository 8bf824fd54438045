/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Header parsing shared by the XDP and TC programs. Parsing only reads; it
 * fills struct fp_pkt and returns -1 with a pass reason when the packet is not
 * one the fast path may touch. */
#pragma once
#include "common.h"

/* TCP header flag bits (byte 13 of the header, fp_pkt.tcp_flags) */
#define FP_TCP_FIN 0x01
#define FP_TCP_SYN 0x02
#define FP_TCP_RST 0x04
#define FP_TCP_ACK 0x10
#define FP_TCP_URG 0x20

struct fp_pkt {
	void *data;
	void *data_end;     /* end of the linear data headers are read from */
	__u32 len;          /* whole frame: TC skbs may carry more than is linear */
	struct ethhdr *eth;
	void *l3;           /* IPv4 or IPv6 header */
	void *l4;           /* TCP/UDP/ICMP header, bounds checked by fp_parse_l4 */
	__u16 tot_len;      /* IP total length (v6: payload + 40), host order */
	__u8 family;        /* AF_INET / AF_INET6 */
	__u8 l4_proto;
	__u8 vlan_tags;
	__u8 tos;           /* IPv4 TOS, IPv6 traffic class */
	__u8 ttl;           /* TTL, hop limit */
	__u8 tcp_flags;     /* FIN, SYN, RST, ... (TCP only) */
	__u8 l4_hdr_len;    /* TCP header with options, or 8 (UDP, ICMP) */
	__be16 sport;
	__be16 dport;
};

/* fp_frame_len is the frame the kernel would forward: up to the end of the
 * IP datagram. Bytes after it (Ethernet padding, trailers) the kernel trims
 * on receive; so does the fast path before it sends a frame on. */
static __always_inline __u32 fp_frame_len(const struct fp_pkt *p)
{
	return (__u32)(p->l3 - p->data) + p->tot_len;
}

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

static __always_inline int fp_is_ipv4_special(__be32 addr)
{
	__u32 a = bpf_ntohl(addr);

	return (a >> 28) == 0xe ||        /* 224.0.0.0/4 multicast */
	       a == 0xffffffff ||         /* limited broadcast */
	       (a >> 24) == 0 ||          /* 0.0.0.0/8 */
	       (a >> 24) == 127;          /* loopback */
}

static __always_inline int fp_is_ipv6_special(const struct in6_addr *a)
{
	__u32 w0 = bpf_ntohl(a->in6_u.u6_addr32[0]);

	if ((w0 >> 24) == 0xff)           /* ff00::/8 multicast */
		return 1;
	if ((w0 & 0xffc00000) == 0xfe800000) /* fe80::/10 link-local */
		return 1;
	if (w0 == 0 && a->in6_u.u6_addr32[1] == 0 && a->in6_u.u6_addr32[2] == 0) {
		__u32 w3 = bpf_ntohl(a->in6_u.u6_addr32[3]);
		if (w3 <= 1)              /* :: and ::1 */
			return 1;
	}
	return 0;
}

/* Parse the L4 ports. The header must lie within the IP payload (not in
 * Ethernet padding after it) and a UDP length must equal the payload's:
 * a longer one conntrack calls invalid; a shorter one the kernel forwards,
 * but the receiver checks the UDP checksum over the UDP length only, and a
 * frame redirected by XDP may reach it vouched for (a veth peer): the
 * kernel forwards those. ICMP needs only its first 4 bytes. p->tot_len is
 * set by the caller. */
static __always_inline int fp_parse_l4(struct fp_pkt *p, void *l4, __u32 *reason)
{
	__u32 l4_off = l4 - p->data;
	__u32 payload = (__u32)(p->l3 - p->data) + p->tot_len - l4_off; /* tot_len covers l4 */

	switch (p->l4_proto) {
	case IPPROTO_TCP: {
		struct tcphdr *th = l4;

		if ((void *)(th + 1) > p->data_end || th->doff < 5 || th->doff * 4 > payload) {
			*reason = FP_PASS_MALFORMED;
			return -1;
		}
		p->sport = th->source;
		p->dport = th->dest;
		p->tcp_flags = ((__u8 *)th)[13];
		p->l4_hdr_len = th->doff * 4;
		p->l4 = l4;
		return 0;
	}
	case IPPROTO_UDP: {
		struct udphdr *uh = l4;
		__u16 ulen;

		if ((void *)(uh + 1) > p->data_end) {
			*reason = FP_PASS_MALFORMED;
			return -1;
		}
		ulen = bpf_ntohs(uh->len);
		/* ulen 0 with a jumbo IPv6 payload is not ours either */
		if (ulen < sizeof(*uh) || ulen != payload) {
			*reason = FP_PASS_MALFORMED;
			return -1;
		}
		p->sport = uh->source;
		p->dport = uh->dest;
		p->l4_hdr_len = sizeof(*uh);
		p->l4 = l4;
		return 0;
	}
	case IPPROTO_ICMP:
	case IPPROTO_ICMPV6:
		/* each family's own ICMP only; IPv4 carrying ICMPv6 is odd, not ours */
		if ((p->l4_proto == IPPROTO_ICMP) != (p->family == AF_INET))
			break;
		if (l4 + 4 > p->data_end || payload < 4) {
			*reason = FP_PASS_MALFORMED;
			return -1;
		}
		p->l4 = l4;
		return 0;
	}
	*reason = FP_PASS_L4_PROTO;
	return -1;
}

/* fp_ipv4_csum_ok: the header's ones' complement sum, checksum included,
 * is all ones. The kernel's receive path drops a header that fails it
 * (ip_rcv_core), before any forwarding; an incremental TTL update would
 * carry the error on. Options go to the kernel, so 20 bytes. */
static __always_inline int fp_ipv4_csum_ok(const struct iphdr *iph)
{
	const __u16 *w = (const __u16 *)iph;
	__u32 sum = 0;
	int i;

#pragma unroll
	for (i = 0; i < 10; i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum == 0xffff;
}

static __always_inline int fp_parse_ipv4(struct fp_pkt *p, __u32 *reason)
{
	struct iphdr *iph = p->l3;
	__u16 tot_len;

	if ((void *)(iph + 1) > p->data_end || iph->version != 4 || iph->ihl < 5) {
		*reason = FP_PASS_MALFORMED;
		return -1;
	}
	tot_len = bpf_ntohs(iph->tot_len);
	if (tot_len < sizeof(*iph) || (__u32)(p->l3 - p->data) + tot_len > p->len) {
		*reason = FP_PASS_MALFORMED;
		return -1;
	}
	if (iph->ihl != 5) {
		*reason = FP_PASS_IP_OPTIONS;
		return -1;
	}
	if (!fp_ipv4_csum_ok(iph)) {
		*reason = FP_PASS_MALFORMED;
		return -1;
	}
	/* MF set or a non-zero offset: leave reassembly/fragmentation to the kernel */
	if (iph->frag_off & bpf_htons(0x3fff)) {
		*reason = FP_PASS_FRAGMENT;
		return -1;
	}
	if (fp_is_ipv4_special(iph->daddr) || fp_is_ipv4_special(iph->saddr)) {
		*reason = FP_PASS_L3_SPECIAL;
		return -1;
	}
	p->family = AF_INET;
	p->tot_len = tot_len;
	p->l4_proto = iph->protocol;
	p->tos = iph->tos;
	p->ttl = iph->ttl;
	if (fp_parse_l4(p, (void *)(iph + 1), reason))
		return -1;
	if (iph->ttl <= 1) {
		*reason = FP_PASS_TTL;
		return -1;
	}
	return 0;
}

static __always_inline int fp_parse_ipv6(struct fp_pkt *p, __u32 *reason)
{
	struct ipv6hdr *ip6h = p->l3;
	__u16 plen;

	if ((void *)(ip6h + 1) > p->data_end || ip6h->version != 6) {
		*reason = FP_PASS_MALFORMED;
		return -1;
	}
	plen = bpf_ntohs(ip6h->payload_len);
	/* payload_len 0 is a jumbogram (hop-by-hop option) or garbage */
	if (plen == 0 || (__u32)(p->l3 - p->data) + sizeof(*ip6h) + plen > p->len) {
		*reason = FP_PASS_MALFORMED;
		return -1;
	}
	if (fp_is_ipv6_special(&ip6h->daddr) || fp_is_ipv6_special(&ip6h->saddr)) {
		*reason = FP_PASS_L3_SPECIAL;
		return -1;
	}
	switch (ip6h->nexthdr) {
	case IPPROTO_TCP:
	case IPPROTO_UDP:
	case IPPROTO_ICMPV6:
		break;
	case 0:   /* hop-by-hop */
	case 43:  /* routing */
	case 44:  /* fragment */
	case 50:  /* ESP */
	case 51:  /* AH */
	case 60:  /* destination options */
	case 135: /* mobility */
	case 139: /* HIP */
	case 140: /* shim6 */
		*reason = FP_PASS_IPV6_EXT;
		return -1;
	default:
		*reason = FP_PASS_L4_PROTO;
		return -1;
	}
	p->family = AF_INET6;
	p->tot_len = plen + sizeof(*ip6h);
	p->l4_proto = ip6h->nexthdr;
	p->tos = (ip6h->priority << 4) | (ip6h->flow_lbl[0] >> 4);
	p->ttl = ip6h->hop_limit;
	if (fp_parse_l4(p, (void *)(ip6h + 1), reason))
		return -1;
	if (ip6h->hop_limit <= 1) {
		*reason = FP_PASS_TTL;
		return -1;
	}
	return 0;
}

/* fp_parse walks Ethernet, up to two VLAN tags and IPv4/IPv6 + L4. */
static __always_inline int fp_parse(struct fp_pkt *p, __u32 *reason)
{
	struct ethhdr *eth = p->data;
	void *cur;
	__u16 proto;
	int i;

	if ((void *)(eth + 1) > p->data_end) {
		*reason = FP_PASS_MALFORMED;
		return -1;
	}
	p->eth = eth;
	proto = bpf_ntohs(eth->h_proto);
	cur = eth + 1;

#pragma unroll
	for (i = 0; i < FP_MAX_VLAN_TAGS; i++) {
		struct vlan_hdr *vh = cur;

		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD)
			break;
		if ((void *)(vh + 1) > p->data_end) {
			*reason = FP_PASS_MALFORMED;
			return -1;
		}
		proto = bpf_ntohs(vh->proto);
		cur = vh + 1;
		p->vlan_tags++;
	}
	if (proto == ETH_P_8021Q || proto == ETH_P_8021AD) {
		*reason = FP_PASS_VLAN; /* more tags than we parse */
		return -1;
	}
	p->l3 = cur;

	if (proto == ETH_P_IP) {
		if (fp_parse_ipv4(p, reason))
			return -1;
	} else if (proto == ETH_P_IPV6) {
		if (fp_parse_ipv6(p, reason))
			return -1;
	} else {
		*reason = FP_PASS_NOT_IP;
		return -1;
	}
	/* Fully parsed, but tagged frames belong to a VLAN device (whose
	 * routing context we do not have): the kernel forwards them. */
	if (p->vlan_tags) {
		*reason = FP_PASS_VLAN;
		return -1;
	}
	return 0;
}
