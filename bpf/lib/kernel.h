/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* The few kernel-internal types the datapath reads, declared with only the
 * fields we use. preserve_access_index makes every access a CO-RE
 * relocation, resolved against the running kernel's BTF at load time, so we
 * need no vmlinux.h and no fixed layout. */
#pragma once
#include "common.h"

#define __ksym __attribute__((section(".ksyms")))

#pragma clang attribute push(__attribute__((preserve_access_index)), apply_to = record)

union nf_inet_addr {
	__u32 all[4];
	__be32 ip;
	__be32 ip6[4];
};

union nf_conntrack_man_proto {
	__be16 all;
};

struct nf_conntrack_man {
	union nf_inet_addr u3;
	union nf_conntrack_man_proto u;
	__u16 l3num;
};

struct nf_conntrack_tuple {
	struct nf_conntrack_man src;
	struct {
		union nf_inet_addr u3;
		union {
			__be16 all;
		} u;
		__u8 protonum;
		__u8 dir;
	} dst;
};

struct nf_conntrack_tuple_hash {
	struct nf_conntrack_tuple tuple;
};

struct nf_ct_ext {
	__u8 offset[9];
};

struct ip_ct_tcp_state {
	__u32 td_end;
	__u32 td_maxend;
	__u32 td_maxwin;
	__u8 td_scale;
	__u8 flags;
};

struct ip_ct_tcp {
	struct ip_ct_tcp_state seen[2];
	__u8 state;
};

union nf_conntrack_proto {
	struct ip_ct_tcp tcp;
};

struct nf_conn {
	struct nf_conntrack_tuple_hash tuplehash[2];
	unsigned long status;
	struct nf_conn *master;
	struct nf_ct_ext *ext;
	union nf_conntrack_proto proto;
};

struct sk_buff {
	unsigned long _nfct;
	int skb_iif;
	__u8 ip_summed:2;
	__u32 priority;
	__u32 mark;
	unsigned char *head;
	__u16 network_header;
};

struct net_device {
	int ifindex;
};

struct nf_hook_state {
	struct net_device *out;
};

struct bpf_nf_ctx {
	const struct nf_hook_state *state;
	struct sk_buff *skb;
};

#pragma clang attribute pop

/* Argument of the conntrack lookup kfuncs (net/netfilter/nf_conntrack_bpf.c);
 * uapi-like, the kernel accepts 12 or 16 bytes of it. */
struct bpf_ct_opts {
	__s32 netns_id;
	__s32 error;
	__u8 l4proto;
	__u8 dir;
	__u16 ct_zone_id;
	__u8 ct_zone_dir;
	__u8 reserved[3];
};

extern struct nf_conn *bpf_xdp_ct_lookup(struct xdp_md *xdp_ctx, struct bpf_sock_tuple *bpf_tuple,
					 __u32 tuple__sz, struct bpf_ct_opts *opts, __u32 opts__sz) __ksym;
extern struct nf_conn *bpf_skb_ct_lookup(struct __sk_buff *skb_ctx, struct bpf_sock_tuple *bpf_tuple,
					 __u32 tuple__sz, struct bpf_ct_opts *opts, __u32 opts__sz) __ksym;
extern void bpf_ct_release(struct nf_conn *ct) __ksym;
extern int bpf_ct_change_timeout(struct nf_conn *nfct, __u32 timeout) __ksym;
extern int bpf_ct_change_status(struct nf_conn *nfct, __u32 status) __ksym;

/* include/uapi/linux/netfilter/nf_conntrack_common.h */
#define IPS_EXPECTED     (1UL << 0)
#define IPS_SEEN_REPLY   (1UL << 1)
#define IPS_ASSURED      (1UL << 2)
#define IPS_CONFIRMED    (1UL << 3)
#define IPS_SEQ_ADJUST   (1UL << 6)
#define IPS_DYING        (1UL << 9)
#define IPS_HELPER       (1UL << 13)
#define IP_CT_RELATED    1
#define IP_CT_IS_REPLY   3
#define IP_CT_RELATED_REPLY 4
#define FP_UDP_STREAM_NS (2ULL * 1000000000ULL) /* nf_conntrack_proto_udp.c: replied and 2 s old */
#define TCP_CONNTRACK_ESTABLISHED 3
#define NF_CT_EXT_HELPER 0
#define BPF_F_CURRENT_NETNS (-1)
#define FP_CT_TCP_WINDOW_SCALE 0x02 /* IP_CT_TCP_FLAG_WINDOW_SCALE: the side's SYN carried a scale */
#define FP_CHECKSUM_UNNECESSARY 1
#define FP_CHECKSUM_PARTIAL 3

extern void *bpf_cast_to_kern_ctx(void *obj) __ksym;
