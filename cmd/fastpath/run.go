package main

import (
	"context"
	"errors"
	"io"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/fastpath-router/fastpath/internal/config"
	"github.com/fastpath-router/fastpath/internal/daemon"
)

func newRunCmd(lf *logFlags, stderr io.Writer) *cobra.Command {
	var (
		path string
		keep bool
	)
	cmd := &cobra.Command{
		Use:   "run -c FILE",
		Short: "Run the fastpath daemon in the foreground",
		Long: `Run the fastpath daemon in the foreground, in the current network namespace.

It attaches the datapath to the interfaces in the config, keeps them attached
as links come and go, and serves the API (fastpath status, stats, flows) on
the config's api.socket. Interfaces in offload mode (the default) forward the
connections conntrack holds as established, NAT included, after the firewall
accepted them; route mode forwards statelessly, skipping the firewall.
SIGINT or SIGTERM detaches everything and exits, so packets go back to the
kernel path; with --keep-datapath the programs stay attached and maps and
links stay pinned under /sys/fs/bpf/fastpath/, and the next daemon adopts
them without a gap in forwarding (restarts, upgrades; fastpath detach
removes them). SIGHUP rereads the config and applies the difference. Logs go
to stderr; it suits a systemd service with Type=notify. Needs root.

Exit status: 0 after a clean stop, 1 if the daemon failed, 2 if the config is
invalid. A crash (a panic, or SIGABRT, which systemd's watchdog sends to a
hung daemon) prints every goroutine's stack and ends the daemon by SIGABRT,
never with status 2, so a supervisor that does not retry invalid configs
still restarts it.`,
		Example: `  # check, then run
  fastpath check-config /etc/fastpath/fastpath.yaml
  fastpath run -c /etc/fastpath/fastpath.yaml

  # more detail while debugging attach problems
  fastpath run -c /etc/fastpath/fastpath.yaml --log-level debug

  # as the systemd unit runs it: restarts and upgrades do not interrupt forwarding
  fastpath run -c /etc/fastpath/fastpath.yaml --keep-datapath

  # inside a network namespace (give each daemon its own api.socket); nsenter
  # keeps /sys/fs/bpf visible, ip netns exec would hide it from --keep-datapath
  nsenter --net=/run/netns/rtr fastpath run -c /etc/fastpath/rtr.yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			crashBySignal()
			if path == "" {
				return usageError(cmd.CommandPath(), errors.New("missing --config FILE"))
			}
			log, err := lf.logger(stderr)
			if err != nil {
				return usageError(cmd.CommandPath(), err)
			}
			cfg, err := config.Load(path)
			if err != nil {
				return configError(err)
			}
			// status shows it: the file itself, whatever directory the
			// daemon was started from
			if abs, err := filepath.Abs(path); err == nil {
				path = abs
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			return daemon.Run(ctx, cfg, daemon.Options{Logger: log, ConfigPath: path, Version: currentVersion().Version, KeepDatapath: keep})
		},
	}
	cmd.Flags().StringVarP(&path, "config", "c", "", "config file (YAML; see docs/config.md)")
	cmd.Flags().BoolVar(&keep, "keep-datapath", false, "on exit leave the datapath attached and pinned for the next daemon (fastpath detach removes it)")
	lf.register(cmd)
	return cmd
}

// signalContext is the command's context, cancelled by SIGINT or SIGTERM so
// that the command can undo what it set up before exiting.
func signalContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
}

// crashBySignal makes a crash of the daemon end it by SIGABRT, after a
// dump of every goroutine, rather than with the Go runtime's exit status
// 2. Status 2 is an invalid config, which the systemd unit does not retry
// (RestartPreventExitStatus=2); a panic, or the SIGABRT that systemd's
// watchdog sends a hung daemon, must be restarted instead
// (scripts/systemd-check.sh showed a watchdog abort left the service
// failed). The full dump in the journal shows where the daemon hung.
func crashBySignal() {
	debug.SetTraceback("crash")
}
