package main

import (
	"io"

	"github.com/spf13/cobra"

	"github.com/fastpath-router/fastpath/internal/demo"
	"github.com/fastpath-router/fastpath/internal/lab"
)

func newDemoCmd(lf *logFlags, stderr io.Writer) *cobra.Command {
	var (
		name string
		keep bool
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Show fastpath forwarding traffic in a throw-away lab",
		Long: `Build a lab (see fastpath lab), run the fastpath daemon in its router
namespace, send ping, TCP and UDP over IPv4 and IPv6 through it, and report
how much of that traffic fastpath forwarded and how much the kernel did.
Everything is removed at the end, also on failure or Ctrl-C, unless --keep is
given and the demo fails. Needs root; the host's own network is not touched.

Exit status: 0 if every check passed, 1 if not.`,
		Example: `  fastpath demo
  fastpath demo --keep --log-level debug   # on failure, leave the lab and daemon for inspection`,
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
			return demo.Run(ctx, demo.Options{
				Name: name, Out: cmd.OutOrStdout(), Log: log, KeepOnFailure: keep,
			})
		},
	}
	cmd.Flags().StringVar(&name, "name", demo.DefaultName, "lab name, 1 to 8 characters from a-z, 0-9 and '-'")
	cmd.Flags().BoolVar(&keep, "keep", false, "keep the lab and the daemon when the demo fails, for debugging")
	// The demo's own messages call it --keep-on-failure.
	cmd.Flags().BoolVar(&keep, "keep-on-failure", false, "same as --keep")
	cmd.Flags().MarkHidden("keep-on-failure")
	lf.register(cmd)
	return cmd
}
