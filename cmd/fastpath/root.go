package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
)

func newRootCmd(stdout, stderr io.Writer) *cobra.Command {
	// The --log-* flags are on the commands that log (run, detach, lab up,
	// demo, bench), not on the clients, which print results, not logs.
	var lf logFlags
	root := &cobra.Command{
		Use:   "fastpath",
		Short: "Linux router fast path in eBPF",
		Long: `fastpath forwards routed IPv4/IPv6 packets in XDP/TC, following the kernel's FIB and neighbour tables.
Everything it cannot handle exactly right goes to the kernel unchanged.

In offload mode (the default) the kernel's firewall, conntrack and NAT decide
on every new connection; once conntrack holds it as established, fastpath
forwards it, NAT included. Route mode forwards statelessly and skips the
firewall: for trusted segments only. See docs/config.md.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          noArgs,
		RunE:          helpOrUnknown,
		Version:       currentVersion().Version,
	}
	root.SetVersionTemplate("fastpath {{.Version}}\n")
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageError(cmd.CommandPath(), err)
	})
	// fastpath completion bash|zsh|fish: the package installs them; shown
	// for installs without it.
	root.CompletionOptions.HiddenDefaultCmd = false
	root.SuggestionsMinimumDistance = 2
	root.AddCommand(
		newRunCmd(&lf, stderr),
		newStatusCmd(),
		newStatsCmd(),
		newFlowsCmd(),
		newEventsCmd(),
		newTopCmd(),
		newReloadCmd(),
		newGuardCmd(),
		newDetachCmd(&lf, stderr),
		newCheckConfigCmd(),
		newVersionCmd(),
		newLabCmd(&lf, stderr),
		newDemoCmd(&lf, stderr),
		newBenchCmd(&lf, stderr),
		newGenDistCmd(),
	)
	return root
}

// noArgs rejects positional arguments as a usage error; on a command with
// subcommands it reads as an unknown command, with suggestions.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	if !cmd.HasSubCommands() {
		return usageError(cmd.CommandPath(), fmt.Errorf("unexpected argument %q", args[0]))
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return usageError(cmd.CommandPath(), fmt.Errorf("%s", msg))
}

// oneArg requires exactly one positional argument, described by name.
func oneArg(name string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		switch {
		case len(args) == 0:
			return usageError(cmd.CommandPath(), fmt.Errorf("missing %s", name))
		case len(args) > 1:
			return usageError(cmd.CommandPath(), fmt.Errorf("unexpected argument %q after %s", args[1], name))
		}
		return nil
	}
}

// helpOrUnknown runs commands that only group others: without arguments
// it shows help (noArgs has refused anything else).
func helpOrUnknown(cmd *cobra.Command, _ []string) error {
	return cmd.Help()
}
