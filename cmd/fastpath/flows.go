package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fastpath-router/fastpath/internal/api"
)

// defaultFlowLimit keeps the table readable on a busy router.
const defaultFlowLimit = 50

func newFlowsCmd() *cobra.Command {
	var (
		f     clientFlags
		ff    flowFilterFlags
		limit int
	)
	cmd := &cobra.Command{
		Use:   "flows",
		Short: "List the connections fastpath forwards itself (offload mode)",
		Long: `List the flow cache of offload mode: the flows fastpath forwards itself,
biggest (by bytes) first. Each connection appears once per direction, since
each direction is a flow of its own (its own ingress, egress and NAT rewrite).

  IN       addresses and ports as packets arrive (src -> dst)
  OUT      as they leave after NAT, or "-" without NAT
  NAT      snat, dnat or snat+dnat, as conntrack decided
  PACKETS  packets and bytes fastpath forwarded for this flow (exact;
  BYTES    conntrack's own counters do not include them)
  AGE      since the flow entered the cache
  IDLE     since its last packet; flows idle longer than flows.idle_timeout
           leave the cache

A flow marked "stale" was cached before routes, neighbours or the firewall
ruleset changed; its next packet checks it again, or sends it to the kernel.

Only TCP and UDP connections that conntrack holds as established and the
firewall accepted are here. ICMP, flows not yet established and everything
else the kernel must see go through the kernel and are never listed: to see
why traffic is not offloaded, look at the pass reasons in 'fastpath stats'
(such as not_established, no_conntrack, icmp; docs/counters.md explains
each).

Filters select connections as conntrack -L does: by the original
direction's protocol, addresses and ports (the client's view), and list
both directions of each connection that matches. -s and -d take an address
or a prefix. With filters, the total counts the matching flows.

-p is the protocol here, as in conntrack; pretty JSON is --pretty.`,
		Example: `  fastpath flows
  fastpath flows --limit 0                     # all of them
  fastpath flows -p udp --dport 53
  fastpath flows -s 198.18.1.0/24 -d 198.18.2.1
  fastpath flows -j | jq '.flows[] | select(.nat != null)'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usageError(cmd.CommandPath(), fmt.Errorf("invalid --limit %d: use 0 for all, or a positive number", limit))
			}
			filter, err := ff.filter()
			if err != nil {
				return usageError(cmd.CommandPath(), err)
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), callTimeout)
			defer cancel()
			fl, err := c.FlowsQuery(ctx, api.FlowQuery{Limit: limit, Filter: filter})
			if err != nil {
				return f.explain(err)
			}
			if !filter.Empty() {
				fl = filterFlows(fl, filter, limit)
			}
			if f.asJSON() {
				return f.writeJSON(cmd.OutOrStdout(), fl)
			}
			return writeFlows(cmd.OutOrStdout(), fl, limit)
		},
	}
	f.registerWith(cmd, "")
	ff.register(cmd)
	cmd.Flags().IntVar(&limit, "limit", defaultFlowLimit, "show at most this many flows, the biggest by bytes; 0 shows all")
	return cmd
}

func writeFlows(w io.Writer, fl *api.Flows, limit int) error {
	flows := slices.Clone(fl.Flows)
	slices.SortStableFunc(flows, compareFlows)
	total := max(len(flows), fl.Total) // the daemon may have cut the list to the limit
	if limit > 0 && len(flows) > limit {
		flows = flows[:limit]
	}

	if total > 0 {
		// Through a buffer: tabwriter pads the last column too, and the
		// stale marker is mostly empty, so trailing blanks are trimmed.
		var buf bytes.Buffer
		tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PROTO\tIN\tOUT\tNAT\tINGRESS\tEGRESS\tPACKETS\tBYTES\tAGE\tIDLE\t")
		for _, f := range flows {
			out := "-"
			if f.NAT != "" {
				out = tupleString(f.Out)
			}
			stale := ""
			if f.Stale {
				stale = "stale"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\t%s\n",
				orDash(f.Proto), tupleString(f.In), out, orDash(f.NAT), orDash(f.Ingress), orDash(f.Egress),
				f.Packets, f.Bytes, shortAge(f.AgeSec), shortAge(f.IdleSec), stale)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		for line := range strings.Lines(buf.String()) {
			if _, err := fmt.Fprintln(w, strings.TrimRight(line, " \n")); err != nil {
				return err
			}
		}
		fmt.Fprintln(w)
	}

	footer := fmt.Sprintf("%d flow%s (capacity %d)", total, plural(total), fl.Capacity)
	if len(flows) < total {
		footer += fmt.Sprintf(", the %d biggest shown; --limit 0 shows all", len(flows))
	}
	_, err := fmt.Fprintln(w, footer)
	return err
}

// compareFlows orders by bytes, biggest first; ties in a stable, readable
// order so the table does not shuffle between runs.
func compareFlows(a, b api.Flow) int {
	return cmp.Or(
		cmp.Compare(b.Bytes, a.Bytes),
		cmp.Compare(b.Packets, a.Packets),
		cmp.Compare(a.Ingress, b.Ingress),
		cmp.Compare(a.Proto, b.Proto),
		a.In.Src.Compare(b.In.Src),
		a.In.Dst.Compare(b.In.Dst),
	)
}

func tupleString(t api.Tuple) string {
	return addrPortString(t.Src) + " -> " + addrPortString(t.Dst)
}

// addrPortString shows a missing address as "?", not "invalid AddrPort".
func addrPortString(ap netip.AddrPort) string {
	if !ap.IsValid() {
		return "?"
	}
	return ap.String()
}

// shortAge formats seconds as 45s, 12m05s or 3h07m: enough precision to
// tell live flows from idle ones, in a narrow column.
func shortAge(sec float64) string {
	if math.IsNaN(sec) || sec < 0 {
		return "-"
	}
	d := time.Duration(min(sec, float64(math.MaxInt64/int64(time.Second))) * float64(time.Second)).Round(time.Second)
	h, m, s := int64(d/time.Hour), int64(d/time.Minute%60), int64(d/time.Second%60)
	switch {
	case h > 0:
		return fmt.Sprintf("%dh%02dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm%02ds", m, s)
	}
	return fmt.Sprintf("%ds", s)
}
