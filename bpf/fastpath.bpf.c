// SPDX-License-Identifier: GPL-2.0 OR BSD-2-Clause
//go:build ignore

/* Entry points only: the XDP and TC programs over one pipeline
 * (lib/pipeline.h), the netfilter-hook program that records netfilter's
 * verdicts (lib/accept.h), and two the daemon runs with BPF_PROG_RUN: the
 * flow cache's idle sweep and the removal of a connection conntrack
 * dropped. */
#include "lib/common.h"
#include "lib/accept.h"
#include "lib/flow.h"
#include "lib/pipeline.h"

char __license[] SEC("license") = "Dual BSD/GPL";

SEC("xdp")
int fp_xdp(struct xdp_md *ctx)
{
	return fp_run(ctx, 1);
}

SEC("tc")
int fp_tc(struct __sk_buff *skb)
{
	return fp_run(skb, 0);
}

SEC("netfilter")
int fp_nf_accept(struct bpf_nf_ctx *ctx)
{
	fp_accept_record(ctx);
	return NF_ACCEPT;
}

/* One per family: the hook state does not say which. */
SEC("netfilter")
int fp_nf_arrive4(struct bpf_nf_ctx *ctx)
{
	fp_arrive(ctx, AF_INET);
	return NF_ACCEPT;
}

SEC("netfilter")
int fp_nf_arrive6(struct bpf_nf_ctx *ctx)
{
	fp_arrive(ctx, AF_INET6);
	return NF_ACCEPT;
}

/* fp_sweep_idle deletes the flows whose last packet is older than
 * older_than_ns, run by the daemon with BPF_PROG_RUN. Walking the cache in
 * the kernel costs tens of nanoseconds a flow; reading it out to user space
 * costs a copy of every entry and system calls. */
SEC("syscall")
int fp_sweep_idle(struct fp_sweep_args *ctx)
{
	struct fp_sweep_args a = {.older_than_ns = ctx->older_than_ns};

	bpf_for_each_map_elem(&fp_flows, fp_sweep_one, &a, 0);
	ctx->scanned = a.scanned;
	ctx->expired = a.expired;
	ctx->unannounced = a.unannounced;
	return 0;
}

/* fp_forget removes a connection's two directions from the record of
 * netfilter's verdicts and then from the flow cache, each counted and
 * announced as every removal is (fp_flow_remove), run by the daemon with
 * BPF_PROG_RUN when conntrack destroys the entry (reason no_conntrack) or
 * another program changes it (conntrack_changed). Verdicts first: a packet
 * that misses the cache in between would fill the flow again from a
 * verdict still recorded. */
SEC("syscall")
int fp_forget(struct fp_forget_args *ctx)
{
	struct fp_flow_key k0 = ctx->k[0], k1 = ctx->k[1];
	__u32 reason = ctx->changed ? FP_DEL_CT_CHANGED : FP_PASS_NO_CONNTRACK;
	__u32 quiet = 0;

	bpf_map_delete_elem(&fp_accepted, &k0);
	bpf_map_delete_elem(&fp_accepted, &k1);
	ctx->removed = fp_flow_forget(&k0, reason, &quiet) + fp_flow_forget(&k1, reason, &quiet);
	ctx->unannounced = quiet;
	return 0;
}
