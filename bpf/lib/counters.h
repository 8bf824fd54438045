/* SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause */
#pragma once
#include "common.h"

/* Counters are per CPU, by the ingress interface's slot (struct fp_iface). */
static __always_inline void fp_count_fwd(__u32 slot, __u64 bytes)
{
	struct fp_stats *s = bpf_map_lookup_elem(&fp_if_stats, &slot);

	if (!s)
		return;
	s->fwd_packets++;
	s->fwd_bytes += bytes;
}

static __always_inline void fp_count_pass(__u32 slot, __u32 reason, __u64 bytes)
{
	struct fp_stats *s = bpf_map_lookup_elem(&fp_if_stats, &slot);

	if (!s)
		return;
	s->pass_packets++;
	s->pass_bytes += bytes;
	if (reason < FP_PASS_MAX)
		s->pass_reason[reason]++;
}

/* fp_count_flow and fp_count_event_lost also run in the sleepable
 * syscall programs (fp_sweep_idle, fp_forget), which the packet path can
 * preempt on the same CPU: atomic, on paths that are rare anyway. */
static __always_inline void fp_count_flow(__u32 slot, int added)
{
	struct fp_stats *s = bpf_map_lookup_elem(&fp_if_stats, &slot);

	if (!s)
		return;
	if (added)
		__sync_fetch_and_add(&s->flows_added, 1);
	else
		__sync_fetch_and_add(&s->flows_removed, 1);
}

static __always_inline void fp_count_event_lost(__u32 slot)
{
	struct fp_stats *s = bpf_map_lookup_elem(&fp_if_stats, &slot);

	if (s)
		__sync_fetch_and_add(&s->events_lost, 1);
}

static __always_inline void fp_count_drop(__u32 slot, __u32 reason, __u64 bytes)
{
	struct fp_stats *s = bpf_map_lookup_elem(&fp_if_stats, &slot);

	if (!s)
		return;
	s->drop_packets++;
	s->drop_bytes += bytes;
	if (reason < FP_DROP_MAX)
		s->drop_reason[reason]++;
}
