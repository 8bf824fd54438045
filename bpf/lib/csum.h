/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
#pragma once
#include "common.h"

static __always_inline __u16 fp_csum_fold(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return (__u16)sum;
}

/* Incremental update of a ones' complement checksum when one 16-bit word
 * changes from old to new (RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m')). All
 * values in network byte order. */
static __always_inline __u16 fp_csum_replace2(__u16 check, __u16 old, __u16 new)
{
	__u32 sum = (__u16)~check;

	sum += (__u16)~old;
	sum += new;
	return ~fp_csum_fold(sum);
}

/* Add a 32-bit ones' complement difference (as bpf_csum_diff returns) to a
 * checksum field. */
static __always_inline __u16 fp_csum_add(__u16 check, __u32 diff)
{
	__u64 sum = (__u16)~check;

	sum += diff;
	sum = (sum & 0xffffffff) + (sum >> 32);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~(__u16)sum;
}
