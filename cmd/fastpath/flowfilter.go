package main

import (
	"slices"

	"github.com/spf13/cobra"

	"github.com/fastpath-router/fastpath/internal/api"
)

// flowFilterFlags are the conntrack -L style filters of 'fastpath flows'.
type flowFilterFlags struct {
	proto, src, dst, sport, dport string
}

func (f *flowFilterFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVarP(&f.proto, "proto", "p", "", "only connections of protocol `PROTO`: tcp or udp")
	fl.StringVarP(&f.src, "src", "s", "", "only connections from `ADDR` (an address or a prefix), original direction")
	fl.StringVarP(&f.dst, "dst", "d", "", "only connections to `ADDR` (an address or a prefix), original direction")
	fl.StringVar(&f.sport, "sport", "", "only connections from source `PORT`, original direction")
	fl.StringVar(&f.dport, "dport", "", "only connections to destination `PORT`, original direction")
	cmd.RegisterFlagCompletionFunc("proto", cobra.FixedCompletions([]string{"tcp", "udp"}, cobra.ShellCompDirectiveNoFileComp))
}

// filter checks the flags and returns the filter they ask for.
func (f *flowFilterFlags) filter() (api.FlowFilter, error) {
	return api.ParseFlowFilter(f.proto, f.src, f.dst, f.sport, f.dport,
		[5]string{"--proto", "--src", "--dst", "--sport", "--dport"})
}

// filterFlows keeps the flows the filter matches, the biggest limit of
// them (0: all); Total counts every match. The daemon does this itself; a
// daemon older than its filters returns everything, so the client does it
// again.
func filterFlows(fl *api.Flows, ff api.FlowFilter, limit int) *api.Flows {
	out := api.FlowQuery{Limit: limit, Filter: ff}.Apply(fl)
	if fl.Total > len(fl.Flows) { // the daemon filtered and cut the list: its count holds
		out.Total = fl.Total
	}
	slices.SortStableFunc(out.Flows, compareFlows) // the table's order, ties included
	return out
}
