package main

import (
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fastpath-router/fastpath/internal/daemon"
)

func newDetachCmd(lf *logFlags, stderr io.Writer) *cobra.Command {
	var of outFlags
	cmd := &cobra.Command{
		Use:   "detach",
		Short: "Remove the datapath a stopped daemon left attached and pinned",
		Long: `Remove everything fastpath left attached or pinned in the current network
namespace: its programs on the interfaces, and its maps and links pinned
under /sys/fs/bpf/fastpath/. Every packet then takes the kernel path alone.

A daemon run with --keep-datapath leaves its datapath in place when it
stops or is killed, so that the next daemon takes it over without a gap in
forwarding. Use detach when no daemon will come back, or before removing
fastpath. It refuses while a daemon runs in this
namespace (stop that daemon first: without --keep-datapath it detaches
everything itself). Needs root.

For a namespace made with ip netns, use nsenter --net=/run/netns/NAME:
ip netns exec mounts its own /sys, which hides the pins.`,
		Example: `  systemctl stop fastpath && fastpath detach
  nsenter --net=/run/netns/rtr fastpath detach
  fastpath detach --json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := lf.logger(stderr)
			if err != nil {
				return usageError(cmd.CommandPath(), err)
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			rep, err := daemon.Detach(ctx, log)
			if err != nil && len(rep.Removed) == 0 {
				return err
			}
			// Otherwise what was removed is printed, then any error.
			if rep.Removed == nil {
				rep.Removed = []string{} // [] in JSON, not null
			}
			out := cmd.OutOrStdout()
			if of.asJSON() {
				return errors.Join(of.writeJSON(out, rep), err)
			}
			return errors.Join(writeDetach(out, rep), err)
		},
	}
	of.register(cmd, "p")
	lf.register(cmd)
	return cmd
}

// writeDetach says what Detach removed.
func writeDetach(w io.Writer, rep daemon.DetachReport) error {
	var b strings.Builder
	if len(rep.Removed) == 0 {
		b.WriteString("nothing to detach\n")
	}
	for _, r := range rep.Removed {
		fmt.Fprintf(&b, "removed %s\n", r)
	}
	_, err := io.WriteString(w, b.String())
	return err
}
