package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fastpath-router/fastpath/internal/api"
)

func newGuardCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "guard",
		Short: "Show and change the guard's allow and deny lists",
		Long: `The guard is the datapath's first stage on every managed interface: it drops
packets by source (deny list, per-source and total rate limits) before
anything else sees them, and never forwards anything (docs/guard.md).

'guard list' shows the lists with the packets each entry matched, the drop
counters per interface and reason, and the sources dropped most.
'guard add' and 'guard del' change a list at run time, without reattaching
anything; such entries last until they are deleted or the daemon stops, and
survive reloads. Entries from the config file change only through it.`,
		Args: noArgs,
		RunE: helpOrUnknown,
	}
	cmd.AddCommand(newGuardListCmd(), newGuardChangeCmd(true), newGuardChangeCmd(false))
	return cmd
}

func newGuardListCmd() *cobra.Command {
	var (
		f         clientFlags
		top       int
		noEntries bool
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "Show the guard's lists, drop counters and top dropped sources",
		Example: `  fastpath guard list
  fastpath guard list --top 50
  fastpath guard list --no-entries        # counters and sizes only: lists of 50k prefixes stay on the daemon
  fastpath guard list --json | jq '.deny[] | select(.packets > 0)'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if top < 0 {
				return usageError(cmd.CommandPath(), fmt.Errorf("--top %d: want 0 or more", top))
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), callTimeout)
			defer cancel()
			g, err := c.Guard(ctx, api.GuardQuery{Top: top, Entries: !noEntries})
			if err != nil {
				return f.explain(err)
			}
			if f.json {
				return f.writeJSON(cmd.OutOrStdout(), g)
			}
			return writeGuard(cmd.OutOrStdout(), g)
		},
	}
	f.register(cmd)
	cmd.Flags().IntVar(&top, "top", 10, "how many of the most dropped sources to show (0: none)")
	cmd.Flags().BoolVar(&noEntries, "no-entries", false, "leave the lists' entries out (their sizes and the counters stay)")
	return cmd
}

func newGuardChangeCmd(add bool) *cobra.Command {
	var f clientFlags
	use, short := "del", "Remove prefixes added at run time from a list"
	if add {
		use, short = "add", "Add prefixes (or addresses) to a list at run time"
	}
	cmd := &cobra.Command{
		Use:     use + " allow|deny PREFIX...",
		Short:   short,
		Example: fmt.Sprintf("  fastpath guard %s deny 198.18.7.0/24 fd00:bad::/48\n  fastpath guard %s allow 198.18.0.10", use, use),
		Args: func(cmd *cobra.Command, args []string) error {
			switch len(args) {
			case 0:
				return usageError(cmd.CommandPath(), fmt.Errorf("missing list (allow or deny)"))
			case 1:
				return usageError(cmd.CommandPath(), fmt.Errorf("missing prefix"))
			}
			if args[0] != "allow" && args[0] != "deny" {
				return usageError(cmd.CommandPath(), fmt.Errorf("unknown list %q; allowed: allow, deny", args[0]))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), callTimeout)
			defer cancel()
			res, err := c.GuardChange(ctx, add, args[0], args[1:])
			if err != nil {
				return f.explain(err)
			}
			if f.json {
				return f.writeJSON(cmd.OutOrStdout(), res)
			}
			verb := "removed from"
			if add {
				verb = "added to"
			}
			for _, p := range res.Changed {
				fmt.Fprintf(cmd.OutOrStdout(), "%s %s the %s list\n", p, verb, res.List)
			}
			return nil
		},
	}
	f.register(cmd)
	return cmd
}

func writeGuard(w io.Writer, g *api.Guard) error {
	for _, l := range []struct {
		name string
		n    int
		es   []api.GuardEntry
	}{{"allow", g.AllowEntries, g.Allow}, {"deny", g.DenyEntries, g.Deny}} {
		fmt.Fprintf(w, "%s list: %d entries\n", l.name, l.n)
		for _, e := range l.es {
			fmt.Fprintf(w, "  %-43s %-7s %12d pkts %14d bytes\n", e.Prefix, e.Origin, e.Packets, e.Bytes)
		}
	}
	for _, i := range g.Interfaces {
		fmt.Fprintf(w, "%s: dropped", i.Name)
		reasons := make([]string, 0, len(i.Dropped))
		for r := range i.Dropped {
			reasons = append(reasons, r)
		}
		slices.Sort(reasons)
		any := false
		for _, r := range reasons {
			if i.Dropped[r] > 0 {
				fmt.Fprintf(w, " %s=%d", r, i.Dropped[r])
				any = true
			}
		}
		if !any {
			fmt.Fprint(w, " nothing")
		}
		fmt.Fprintf(w, "; allowed %d\n", i.Allowed)
	}
	if len(g.Top) > 0 {
		fmt.Fprintln(w, "most dropped sources (sampled: one drop in 16 counts 16, so estimates):")
		for _, s := range g.Top {
			fmt.Fprintf(w, "  %-43s %12d pkts %14d bytes  %s\n", s.Source, s.Packets, s.Bytes, s.Reason)
		}
	}
	return nil
}

// writeGuardRates adds top's guard section: drop rates by reason over all
// interfaces, biggest first, when the guard dropped anything in the
// interval.
func writeGuardRates(b *strings.Builder, prev, cur *api.Guard, dt float64) {
	if prev == nil || cur == nil || dt <= 0 {
		return
	}
	before := map[string]map[string]uint64{}
	for _, i := range prev.Interfaces {
		before[i.Name] = i.Dropped
	}
	byReason := map[string]float64{}
	for _, i := range cur.Interfaces {
		p, ok := before[i.Name]
		if !ok {
			continue
		}
		for r, n := range i.Dropped {
			if n > p[r] {
				byReason[r] += float64(n-p[r]) / dt
			}
		}
	}
	if len(byReason) == 0 {
		return
	}
	var rates []reasonRate
	for r, v := range byReason {
		rates = append(rates, reasonRate{r, v})
	}
	slices.SortFunc(rates, func(a, b reasonRate) int {
		return cmp.Or(cmp.Compare(b.rate, a.rate), cmp.Compare(a.name, b.name))
	})
	b.WriteString("\n")
	rows := [][]string{{"DROPPED BY GUARD", "PKT/S"}}
	for _, r := range rates {
		rows = append(rows, []string{r.name, si(r.rate)})
	}
	writeTable(b, rows, 1)
}
