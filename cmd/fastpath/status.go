package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fastpath-router/fastpath/internal/api"
)

// callTimeout bounds one API call from the CLI.
const callTimeout = 10 * time.Second

func newStatusCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the daemon and how each interface is attached",
		Long: `Show the running daemon (version, pid, network namespace, config) and, for each
configured interface, its mode, the attach method configured and the one in
use, its state, the BPF program id and whether it can be an XDP redirect
target. An interface in state "error" or "missing" is served by the kernel
alone; the ERROR column says why.`,
		Example: `  fastpath status
  fastpath status --json | jq '.interfaces[] | select(.state != "attached")'
  fastpath status -n rtr          # the daemon of network namespace rtr
  fastpath status --socket /run/fastpath/lab.sock
  FASTPATH_SOCKET=/run/fastpath/lab.sock fastpath status`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), callTimeout)
			defer cancel()
			c, err := f.client()
			if err != nil {
				return err
			}
			st, err := c.Status(ctx)
			if err != nil {
				return f.explain(err)
			}
			if f.asJSON() {
				return f.writeJSON(cmd.OutOrStdout(), st)
			}
			return writeStatus(cmd.OutOrStdout(), st, time.Now())
		},
	}
	f.register(cmd)
	return cmd
}

func writeStatus(w io.Writer, st *api.Status, now time.Time) error {
	fmt.Fprintf(w, "fastpath %s, pid %d, netns %s\n", st.Version, st.PID, orDash(st.NetNS))
	fmt.Fprintf(w, "config:  %s\n", orDash(st.ConfigFile))
	if !st.StartedAt.IsZero() {
		fmt.Fprintf(w, "started: %s (up %s)\n", st.StartedAt.Local().Format(time.RFC3339),
			now.Sub(st.StartedAt).Round(time.Second))
	}
	switch {
	case st.RevalidateEvery == "off":
		fmt.Fprintln(w, "revalidation: off (every ruleset change comes with an event)")
	case st.RevalidateEvery != "":
		fmt.Fprintf(w, "revalidation: every %s: %s\n", st.RevalidateEvery, strings.Join(st.RevalidateWhy, "; "))
	}
	if dp := st.Datapath; dp != nil {
		fmt.Fprintf(w, "datapath: route generation %d, ruleset generation %d, watchdog %s\n",
			dp.RouteGeneration, dp.RulesetGeneration, dp.Watchdog)
		for _, h := range dp.Held {
			fmt.Fprintf(w, "held back, to the kernel: %s\n", h)
		}
	}
	if d := st.Dashboard; d != nil {
		access := "read-only"
		if d.Write {
			access = "write actions with the token"
		}
		fmt.Fprintf(w, "dashboard: %s (%s)\n", d.URL, access)
		if d.Warning != "" {
			fmt.Fprintf(w, "WARNING: %s\n", d.Warning)
		}
	}
	fmt.Fprintln(w)
	if len(st.Interfaces) == 0 {
		fmt.Fprintln(w, "no interfaces configured")
		return nil
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INTERFACE\tIFINDEX\tMODE\tATTACH\tATTACHED AS\tSTATE\tPROGRAM ID\tXDP TARGET\tERROR")
	for _, i := range st.Interfaces {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			i.Name, numOrDash(uint64(i.Ifindex)), orDash(i.Mode), orDash(i.Attach), orDash(i.AttachedAs),
			orDash(i.State), numOrDash(uint64(i.ProgramID)), yesNo(i.XDPTarget), orDash(i.Error))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, i := range st.Interfaces {
		if i.AttachedAs != "" && i.AttachReason != "" {
			fmt.Fprintf(w, "%s: %s: %s\n", i.Name, i.AttachedAs, i.AttachReason)
		}
		if len(i.NFTIngressChains) > 0 {
			fmt.Fprintf(w, "%s: packets arriving here stay with the kernel: nftables ingress chains %s\n", i.Name, strings.Join(i.NFTIngressChains, ", "))
		}
		if len(i.NFTEgressChains) > 0 {
			fmt.Fprintf(w, "%s: no redirect leaves here: nftables egress chains %s\n", i.Name, strings.Join(i.NFTEgressChains, ", "))
		}
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func numOrDash(n uint64) string {
	if n == 0 {
		return "-"
	}
	return strconv.FormatUint(n, 10)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}
