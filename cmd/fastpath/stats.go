package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fastpath-router/fastpath/internal/api"
)

func newStatsCmd() *cobra.Command {
	var (
		f   clientFlags
		all bool
	)
	cmd := &cobra.Command{
		Use:   "stats [INTERFACE...]",
		Short: "Show forwarded and passed-to-kernel counters per interface",
		Long: `Show the datapath counters of each interface, counted where packets arrive:
packets and bytes fastpath forwarded itself, packets and bytes it passed to
the kernel, and why it passed them (docs/counters.md explains each reason).
In offload mode, "flows" counts the flows this interface put into the flow
cache and those the datapath removed (TCP FIN/RST, conntrack entry gone);
'fastpath flows' lists the ones cached now. Reasons and flow counts that are
zero are left out unless --all is given. Counters start at zero when the
daemon starts. Name interfaces to see only those (as ip -s link show DEV).`,
		Example: `  fastpath stats
  fastpath stats --all
  fastpath stats r1
  watch -n1 fastpath stats
  fastpath stats -j | jq '.interfaces[] | {name, forwarded}'`,
		Args: cobra.ArbitraryArgs,
		// Completes the interfaces the daemon serves, if it answers.
		ValidArgsFunction: func(cmd *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
			c, err := f.client()
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), time.Second)
			defer cancel()
			st, err := c.Stats(ctx)
			if err != nil {
				return nil, cobra.ShellCompDirectiveNoFileComp
			}
			var names []string
			for _, i := range st.Interfaces {
				if !slices.Contains(args, i.Name) {
					names = append(names, i.Name)
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), callTimeout)
			defer cancel()
			st, err := c.Stats(ctx)
			if err != nil {
				return f.explain(err)
			}
			if st, err = onlyInterfaces(st, args); err != nil {
				return err
			}
			if f.asJSON() {
				return f.writeJSON(cmd.OutOrStdout(), st)
			}
			return writeStats(cmd.OutOrStdout(), st, all)
		},
	}
	f.register(cmd)
	cmd.Flags().BoolVar(&all, "all", false, "also show pass reasons and flow counts that are zero")
	return cmd
}

// onlyInterfaces keeps the named interfaces, in the order named; a name
// the datapath does not serve is an error listing those it does.
func onlyInterfaces(st *api.Stats, names []string) (*api.Stats, error) {
	if len(names) == 0 {
		return st, nil
	}
	out := &api.Stats{Interfaces: []api.InterfaceStats{}}
	for _, n := range names {
		i := slices.IndexFunc(st.Interfaces, func(s api.InterfaceStats) bool { return s.Name == n })
		if i < 0 {
			served := make([]string, len(st.Interfaces))
			for k, s := range st.Interfaces {
				served[k] = s.Name
			}
			if len(served) == 0 {
				return nil, fmt.Errorf("interface %q is not served by the datapath (no interface is)", n)
			}
			return nil, fmt.Errorf("interface %q is not served by the datapath (it serves %s)", n, strings.Join(served, ", "))
		}
		out.Interfaces = append(out.Interfaces, st.Interfaces[i])
	}
	return out, nil
}

func writeStats(w io.Writer, st *api.Stats, all bool) error {
	if len(st.Interfaces) == 0 {
		_, err := fmt.Fprintln(w, "no interfaces served by the datapath")
		return err
	}
	for n, i := range st.Interfaces {
		if n > 0 {
			fmt.Fprintln(w)
		}
		reasons := sortedReasons(i.PassReasons, all)
		// Flow cache churn exists only in offload mode; route mode
		// interfaces would show a line of zeros.
		flows := all || i.FlowsAdded > 0 || i.FlowsRemoved > 0
		// Column widths: labels left-aligned, numbers right-aligned.
		lw, pw := len("forwarded"), digits(max(i.Forwarded.Packets, i.Passed.Packets))
		for _, r := range reasons {
			lw = max(lw, len(r.name)+2)
			pw = max(pw, digits(r.count))
		}
		bw := digits(max(i.Forwarded.Bytes, i.Passed.Bytes))
		if flows {
			pw = max(pw, digits(i.FlowsAdded))
			bw = max(bw, digits(i.FlowsRemoved))
		}
		fmt.Fprintf(w, "%s (ifindex %d)\n", i.Name, i.Ifindex)
		fmt.Fprintf(w, "  %-*s  %*d pkts  %*d bytes\n", lw, "forwarded", pw, i.Forwarded.Packets, bw, i.Forwarded.Bytes)
		if flows {
			fmt.Fprintf(w, "  %-*s  %*d added %*d removed\n", lw, "flows", pw, i.FlowsAdded, bw, i.FlowsRemoved)
		}
		fmt.Fprintf(w, "  %-*s  %*d pkts  %*d bytes\n", lw, "passed", pw, i.Passed.Packets, bw, i.Passed.Bytes)
		for _, r := range reasons {
			fmt.Fprintf(w, "    %-*s  %*d pkts\n", lw-2, r.name, pw, r.count)
		}
	}
	return nil
}

func digits(n uint64) int { return len(strconv.FormatUint(n, 10)) }

type reason struct {
	name  string
	count uint64
}

// sortedReasons lists the biggest first, then by name; zeros only if all.
func sortedReasons(m map[string]uint64, all bool) []reason {
	var out []reason
	for name, count := range m {
		if count > 0 || all {
			out = append(out, reason{name, count})
		}
	}
	slices.SortFunc(out, func(a, b reason) int {
		if c := cmp.Compare(b.count, a.count); c != 0 {
			return c
		}
		return cmp.Compare(a.name, b.name)
	})
	return out
}
