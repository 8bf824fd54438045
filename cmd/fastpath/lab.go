package main

import (
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"

	"github.com/fastpath-router/fastpath/internal/lab"
)

func newLabCmd(lf *logFlags, stderr io.Writer) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "Create or remove a test network of namespaces",
		Long: `Manage a lab: three network namespaces joined by veth pairs,

  gen [g0] <-> [r0] rtr [r1] <-> [s0] sink

with IPv4 (198.18.0.0/15) and IPv6 (fd00::/8) addresses, where rtr routes
between gen and sink. Run fastpath in rtr to try it without touching the
host's own network. Needs root.`,
		Args: noArgs,
		RunE: helpOrUnknown,

		SuggestionsMinimumDistance: 2,
	}
	cmd.AddCommand(newLabUpCmd(lf, stderr), newLabDownCmd())
	return cmd
}

func newLabUpCmd(lf *logFlags, stderr io.Writer) *cobra.Command {
	var (
		name string
		nat  bool
	)
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Create a lab",
		Long: `Create the lab's namespaces, veths, addresses and routes, and wait until the
links are up. It fails, changing nothing, if the lab already exists.

The router has no ruleset: conntrack is not active there, so offload mode
passes every packet to the kernel (reason no_conntrack) until a ruleset
uses it. --nat installs one, as fastpath demo does: masquerade of
everything leaving towards the sink (table inet fastpath_lab).`,
		Example: `  fastpath lab up --nat
  ip netns exec fp-lab-rtr fastpath run -c lab.yaml   # interfaces r0 and r1, api.socket of its own
  ip netns exec fp-lab-gen ping 198.18.2.1
  fastpath lab down`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.ValidateName(name); err != nil {
				return usageError(cmd.CommandPath(), err)
			}
			log, err := lf.logger(stderr)
			if err != nil {
				return usageError(cmd.CommandPath(), err)
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			l, err := lab.Up(ctx, lab.Options{Name: name, Log: log})
			if err != nil {
				return err
			}
			if nat {
				if err := l.Masquerade(ctx); err != nil {
					return errors.Join(err, lab.Down(l.Name)) // all or nothing
				}
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "lab %s is up:\n", l.Name)
			fmt.Fprintf(out, "  %-16s %s %s, %s\n", l.Gen, l.GenIf, l.GenAddr4, l.GenAddr6)
			fmt.Fprintf(out, "  %-16s %s %s, %s; %s %s, %s\n", l.Rtr,
				l.RtrIn, l.RtrInAddr4, l.RtrInAddr6, l.RtrOut, l.RtrOutAddr4, l.RtrOutAddr6)
			fmt.Fprintf(out, "  %-16s %s %s, %s\n", l.Sink, l.SinkIf, l.SinkAddr4, l.SinkAddr6)
			if nat {
				fmt.Fprintf(out, "  %s masquerades what leaves %s (nftables table inet fastpath_lab)\n", l.Rtr, l.RtrOut)
			} else {
				fmt.Fprintf(out, "  %s has no ruleset: conntrack is off there, offload mode will pass everything (--nat adds masquerade)\n", l.Rtr)
			}
			fmt.Fprintf(out, "try:    ip netns exec %s ping %s\n", l.Gen, l.SinkAddr4)
			fmt.Fprintf(out, "remove: fastpath lab down --name %s\n", l.Name)
			return nil
		},
	}
	cmd.Flags().StringVar(&name, "name", lab.DefaultName, "lab name, 1 to 8 characters from a-z, 0-9 and '-'")
	cmd.Flags().BoolVar(&nat, "nat", false, "install a ruleset in the router: masquerade towards the sink (conntrack on, as offload mode needs)")
	lf.register(cmd)
	return cmd
}

func newLabDownCmd() *cobra.Command {
	var name string
	cmd := &cobra.Command{
		Use:   "down",
		Short: "Remove a lab",
		Long: `Remove the lab's namespaces and with them its veths; a lab that exists only
in part is removed too. A lab that does not exist at all is an error (exit
status 1), so a mistyped --name does not pass unnoticed.`,
		Example: `  fastpath lab down
  fastpath lab down --name x`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.ValidateName(name); err != nil {
				return usageError(cmd.CommandPath(), err)
			}
			if !lab.Exists(name) {
				return fmt.Errorf("lab %s does not exist (no namespace of it is there), nothing removed", name)
			}
			if err := lab.Down(name); err != nil {
				return err
			}
			_, err := fmt.Fprintf(cmd.OutOrStdout(), "lab %s removed\n", name)
			return err
		},
	}
	cmd.Flags().StringVar(&name, "name", lab.DefaultName, "lab name")
	return cmd
}
