package main

import (
	"errors"
	"io"

	"github.com/spf13/cobra"

	"github.com/fastpath-router/fastpath/internal/demo"
	"github.com/fastpath-router/fastpath/internal/lab"
)

func newDemoCmd(lf *logFlags, stderr io.Writer) *cobra.Command {
	var (
		name      string
		keep      bool
		dashboard bool
		dashAddr  string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Show fastpath forwarding traffic in a throw-away lab",
		Long: `Build a lab (see fastpath lab), run the fastpath daemon in its router
namespace, send ping, TCP and UDP over IPv4 and IPv6 through it, and report
how much of that traffic fastpath forwarded and how much the kernel did.
Everything is removed at the end, also on failure or Ctrl-C, unless --keep is
given and the demo fails. Needs root; the host's own network is not touched.

With --dashboard the daemon also serves its web dashboard (docs/dashboard.md),
reachable from this host at --dashboard-addr; the demo prints the URL and
keeps the lab up, with light traffic, until Ctrl-C.

Exit status: 0 if every check passed, 1 if not.`,
		Example: `  fastpath demo
  fastpath demo --keep --log-level debug   # on failure, leave the lab and daemon for inspection
  fastpath demo --dashboard                # then open http://127.0.0.1:9469/; Ctrl-C ends it`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := lab.ValidateName(name); err != nil {
				return usageError(cmd.CommandPath(), err)
			}
			if cmd.Flags().Changed("dashboard-addr") && !dashboard {
				return usageError(cmd.CommandPath(), errors.New("--dashboard-addr needs --dashboard"))
			}
			if !dashboard {
				dashAddr = ""
			}
			log, err := lf.logger(stderr)
			if err != nil {
				return usageError(cmd.CommandPath(), err)
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			return demo.Run(ctx, demo.Options{
				Name: name, Out: cmd.OutOrStdout(), Log: log, KeepOnFailure: keep,
				Dashboard: dashAddr,
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", demo.DefaultName, "lab name, 1 to 8 characters from a-z, 0-9 and '-'")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the lab and the daemon when the demo fails, for debugging")
	// The demo's own messages call it --keep-on-failure.
	cmd.Flags().BoolVar(&keep, "keep-on-failure", false, "same as --keep")
	cmd.Flags().MarkHidden("keep-on-failure")
	cmd.Flags().BoolVar(&dashboard, "dashboard", false, "serve the daemon's web dashboard and keep the lab up until Ctrl-C")
	cmd.Flags().StringVar(&dashAddr, "dashboard-addr", demo.DefaultDashboard, "host:port on this host for the dashboard (with --dashboard)")
	lf.register(cmd)
	return cmd
}
