/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
/* Verifying a TCP/UDP checksum, as conntrack does at PREROUTING
 * (nf_conntrack_checksum=1). Global functions: the verifier checks their
 * loops once, not once per path of the program that calls them. */
#pragma once
#include "common.h"
#include "kernel.h"
#include "parse.h"
#include <bpf/bpf_core_read.h>

#define FP_CSUM_MAX_LEN 16384 /* longer segments are not verified here: to the kernel (a power of 2) */
#define FP_CSUM_CHUNK 256      /* bytes summed per helper call: few loop rounds for the verifier */

/* Where the TC check copies paged data to: the programs' stack has no
 * room left for it. Its key lives in .rodata for the same reason. */
struct fp_csum_buf {
	__u8 b[FP_CSUM_CHUNK];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct fp_csum_buf);
} fp_csum_scratch SEC(".maps");

/* The scratch map's key, in .rodata: a key on the stack would cost the
 * frame bytes it does not have. */
const volatile __u32 fp_zero_key = 0;

static __always_inline __u32 fp_csum_fold32(__u64 sum)
{
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffffffff) + (sum >> 32);
	return (__u32)sum;
}

/* 1 when the ones' complement sum of the segment and its pseudo-header
 * (seed) is all ones: the checksum is right. */
static __always_inline int fp_csum_is_ok(__u64 sum)
{
	__u32 s = fp_csum_fold32(sum);

	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return s == 0xffff;
}

/* fp_csum_tail adds the first len bytes of cb (fewer than a chunk: the
 * end of a segment, copied out) to sum. */
static __always_inline __u64 fp_csum_tail(const struct fp_csum_buf *cb, __u32 len, __u64 sum)
{
	__u32 pos;

	for (pos = 0; pos + 4 <= len && pos < FP_CSUM_CHUNK; pos += 4)
		sum += *(__u32 *)&cb->b[pos & (FP_CSUM_CHUNK - 4)];
	if (pos + 2 <= len) {
		sum += *(__u16 *)&cb->b[pos & (FP_CSUM_CHUNK - 2)];
		pos += 2;
	}
	if (pos < len)
		sum += cb->b[pos & (FP_CSUM_CHUNK - 1)]; /* the odd byte, zero padded (little endian) */
	return sum;
}

/* The two checks below run in their own frames on top of the programs',
 * which leave them no stack: they keep four values live across helper
 * calls (the context, offset, length and sum: the callee-saved
 * registers) and bound their loops by the length alone. */

/* A zero the compiler cannot hoist into a register of its own. */
#define FP_CSUM_FAIL(sum) asm volatile("%0 = 0" : "=r"(sum))

/* fp_xdp_l4_csum sums len bytes at off of the frame (linear: XDP without
 * fragments) onto seed. 1: right, 0: wrong or not all in the frame. The
 * caller sends segments longer than FP_CSUM_MAX_LEN to the kernel. */
__noinline int fp_xdp_l4_csum(struct xdp_md *ctx, __u32 off, __u32 len, __u32 seed)
{
	struct fp_csum_buf *cb;
	__u64 sum = seed;
	/* offset and length share a register, as in fp_tc_l4_csum; the L4
	 * header starts within the first bytes: bounding it keeps every
	 * packet offset below the verifier's 64 KiB */
	__u64 ol = ((__u64)(off & 0xff) << 32) | (len & (FP_CSUM_MAX_LEN - 1));
	void *cur;

	for (int i = 0; i < FP_CSUM_MAX_LEN / FP_CSUM_CHUNK; i++) {
		if ((ol & 0xffffffff) < FP_CSUM_CHUNK)
			break;
		cur = (void *)(long)ctx->data + ((ol >> 32) & 0x7fff);
		if (cur + FP_CSUM_CHUNK > (void *)(long)ctx->data_end)
			goto fail;
		sum = (__u32)bpf_csum_diff(NULL, 0, cur, FP_CSUM_CHUNK, fp_csum_fold32(sum));
		ol += ((__u64)FP_CSUM_CHUNK << 32) - FP_CSUM_CHUNK;
	}
	/* the rest (below a chunk) is copied out: bounding it by the
	 * packet's end needs pointer arithmetic the verifier refuses */
	len = ol & (FP_CSUM_CHUNK - 1);
	if (len) {
		cb = bpf_map_lookup_elem(&fp_csum_scratch, (const void *)&fp_zero_key);
		if (!cb || bpf_xdp_load_bytes(ctx, (ol >> 32) & 0x7fff, cb->b, len))
			goto fail;
		cb = bpf_map_lookup_elem(&fp_csum_scratch, (const void *)&fp_zero_key);
		if (!cb)
			goto fail;
		len = ol & (FP_CSUM_CHUNK - 1);
		sum = fp_csum_tail(cb, len, sum);
	}
	if (0) {
fail:
		FP_CSUM_FAIL(sum);
	}
	return fp_csum_is_ok(sum);
}

/* The kernel does not verify what an skb's checksum state vouches for
 * (skb_csum_unnecessary: CHECKSUM_UNNECESSARY from the device,
 * CHECKSUM_PARTIAL from a local stack or GRO), so neither does TC. */
__noinline int fp_tc_csum_vouched(struct __sk_buff *skb)
{
	struct sk_buff *kskb = bpf_cast_to_kern_ctx(skb);
	__u8 summed = BPF_CORE_READ_BITFIELD(kskb, ip_summed);

	return summed == FP_CHECKSUM_UNNECESSARY || summed == FP_CHECKSUM_PARTIAL;
}

/* fp_tc_l4_csum: fp_xdp_l4_csum for an skb, whose data may be paged (0
 * also when not all of it can be read). The caller keeps off and len in
 * range. This frame must take no stack (the program's is nearly full):
 * four live values across helper calls, one return, failures leave a sum
 * of 0, which is never right. Segments longer than FP_CSUM_MAX_LEN are
 * not checked here (the caller sends them to the kernel). */
__noinline int fp_tc_l4_csum(struct __sk_buff *skb, __u32 off, __u32 len, __u32 seed)
{
	struct fp_csum_buf *cb;
	__u64 sum = seed;
	/* offset and length share a register: the context, these, the sum
	 * and the round fill the four that survive helper calls */
	__u64 ol = ((__u64)(off & 0xffff) << 32) | (len & (FP_CSUM_MAX_LEN - 1));

	for (int i = 0; i < FP_CSUM_MAX_LEN / FP_CSUM_CHUNK; i++) {
		if ((ol & 0xffffffff) < FP_CSUM_CHUNK)
			break;
		cb = bpf_map_lookup_elem(&fp_csum_scratch, (const void *)&fp_zero_key);
		if (!cb || bpf_skb_load_bytes(skb, (ol >> 32) & 0x1ffff, cb->b, FP_CSUM_CHUNK))
			goto fail;
		/* looked up again rather than kept across the call */
		cb = bpf_map_lookup_elem(&fp_csum_scratch, (const void *)&fp_zero_key);
		if (!cb)
			goto fail;
		sum = (__u32)bpf_csum_diff(NULL, 0, (__be32 *)cb->b, FP_CSUM_CHUNK, fp_csum_fold32(sum));
		ol += ((__u64)FP_CSUM_CHUNK << 32) - FP_CSUM_CHUNK;
	}
	len = ol & (FP_CSUM_CHUNK - 1); /* below a chunk here */
	if (len) {
		cb = bpf_map_lookup_elem(&fp_csum_scratch, (const void *)&fp_zero_key);
		if (!cb || bpf_skb_load_bytes(skb, (ol >> 32) & 0x1ffff, cb->b, len))
			goto fail;
		cb = bpf_map_lookup_elem(&fp_csum_scratch, (const void *)&fp_zero_key);
		if (!cb)
			goto fail;
		/* the buffer's rest is stale: sum only what was loaded */
		len = ol & (FP_CSUM_CHUNK - 1);
		sum = fp_csum_tail(cb, len, sum);
	}
	if (0) {
fail:
		FP_CSUM_FAIL(sum);
	}
	return fp_csum_is_ok(sum);
}

/* fp_l4_csum_ok: whether the packet's TCP/UDP checksum is right (1), or
 * wrong or not verifiable here (0). A UDP checksum of 0 means none:
 * conntrack accepts it for IPv4 and IPv6 alike (udp_error). */
static __always_inline int fp_l4_csum_ok(void *ctx, const int xdp, const struct fp_pkt *p)
{
	__u32 l4_off, l4_len;
	__u64 sum;

	/* first: nothing of ours is live across this call */
	if (!xdp && fp_tc_csum_vouched(ctx))
		return 1;
	l4_off = p->l4 - p->data;
	l4_len = p->tot_len - (__u32)(p->l4 - p->l3);
	/* 64-bit: the two words can carry out of 32 bits */
	sum = (__u64)bpf_htonl(l4_len) + bpf_htonl(p->l4_proto);
	if (p->l4_proto == IPPROTO_UDP) {
		struct udphdr *uh = p->l4;

		if ((void *)(uh + 1) > p->data_end)
			return 0;
		if (uh->check == 0)
			return 1;
	}
	if (p->family == AF_INET) {
		struct iphdr *iph = p->l3;

		if ((void *)(iph + 1) > p->data_end)
			return 0;
		sum += iph->saddr;
		sum += iph->daddr;
	} else {
		struct ipv6hdr *ip6h = p->l3;
		int i;

		if ((void *)(ip6h + 1) > p->data_end)
			return 0;
#pragma unroll
		for (i = 0; i < 4; i++) {
			sum += ip6h->saddr.in6_u.u6_addr32[i];
			sum += ip6h->daddr.in6_u.u6_addr32[i];
		}
	}
	if (l4_len >= FP_CSUM_MAX_LEN)
		return 0;
	if (xdp)
		return fp_xdp_l4_csum(ctx, l4_off, l4_len, fp_csum_fold32(sum)) == 1;
	return fp_tc_l4_csum(ctx, l4_off, l4_len, fp_csum_fold32(sum)) == 1;
}
