// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
//go:build ignore

/* Replay: run another program (fastpath's) many times with BPF_PROG_RUN on
 * the same frame. The test run reuses one buffer across repeats, so a
 * program that edits the frame (MACs, TTL, NAT) would see its own output
 * on the next repeat. These wrappers first restore the frame's first
 * REPLAY_HDR bytes from a template, optionally write a varying 32-bit field
 * (flow i of n: a port pair or an address word), then tail-call the
 * program under test. replay_nop is the empty target that measures the
 * wrapper itself. */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char __license[] SEC("license") = "Dual BSD/GPL";

#define REPLAY_HDR 80 /* covers Ethernet + IPv6 + TCP */

struct replay_cfg {
	__u8 hdr[REPLAY_HDR];
	__u32 vary_off; /* offset of a big-endian 32-bit field; 0: none */
	__u32 vary_base;
	__u32 vary_n;   /* the field is vary_base + (run % vary_n) */
};

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct replay_cfg);
} replay_conf SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} replay_seq SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} replay_xdp_jmp SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u32);
} replay_tc_jmp SEC(".maps");

/* replay_next returns the config and the varying field's next value. */
static __always_inline struct replay_cfg *replay_next(__be32 *val)
{
	__u32 zero = 0;
	struct replay_cfg *cfg = bpf_map_lookup_elem(&replay_conf, &zero);
	__u64 *seq = bpf_map_lookup_elem(&replay_seq, &zero);

	if (!cfg || !seq)
		return 0;
	if (cfg->vary_n)
		*val = bpf_htonl(cfg->vary_base + (__u32)(*seq % cfg->vary_n));
	*seq += 1;
	return cfg;
}

SEC("xdp")
int replay_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct replay_cfg *cfg;
	__be32 val = 0;
	__u32 off;

	cfg = replay_next(&val);
	if (!cfg || data + REPLAY_HDR > data_end)
		return XDP_ABORTED;
	__builtin_memcpy(data, cfg->hdr, REPLAY_HDR);
	off = cfg->vary_off;
	if (cfg->vary_n && off <= REPLAY_HDR - 4) {
		__be32 *p = data + off;

		if ((void *)(p + 1) <= data_end)
			__builtin_memcpy(p, &val, 4);
	}
	bpf_tail_call(ctx, &replay_xdp_jmp, 0);
	return XDP_ABORTED;
}

SEC("tc")
int replay_tc(struct __sk_buff *skb)
{
	struct replay_cfg *cfg;
	__be32 val = 0;

	cfg = replay_next(&val);
	if (!cfg)
		return TC_ACT_SHOT;
	if (bpf_skb_store_bytes(skb, 0, cfg->hdr, REPLAY_HDR, 0))
		return TC_ACT_SHOT;
	if (cfg->vary_n && cfg->vary_off <= REPLAY_HDR - 4 &&
	    bpf_skb_store_bytes(skb, cfg->vary_off, &val, 4, 0))
		return TC_ACT_SHOT;
	bpf_tail_call(skb, &replay_tc_jmp, 0);
	return TC_ACT_SHOT;
}

SEC("xdp")
int replay_nop_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int replay_nop_tc(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}
