package main

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/fastpath-router/fastpath/internal/config"
	"github.com/fastpath-router/fastpath/internal/dashboard"
	"github.com/fastpath-router/fastpath/internal/guard"
)

// checkResult is check-config's --json output.
type checkResult struct {
	File   string   `json:"file"`
	OK     bool     `json:"ok"`
	Errors []string `json:"errors"`
}

func newCheckConfigCmd() *cobra.Command {
	var out outFlags
	cmd := &cobra.Command{
		Use:   "check-config FILE",
		Short: "Validate a config file without running anything",
		Long: `Validate a config file: strict YAML (unknown keys are errors), the
version, interface names, modes, attach methods, the flow cache settings and
the API socket, the guard's prefixes and limits, and every line of the
guard's list files. Every problem is reported, each with its line and field.
docs/config.md describes every key. Nothing is attached and no
root is needed, so it fits in a deploy pipeline before the daemon restarts.

Exit status: 0 if the file is valid, 2 if not.`,
		Example: `  fastpath check-config /etc/fastpath/fastpath.yaml
  fastpath check-config -j new.yaml | jq -r '.errors[]'
  fastpath check-config new.yaml && cp new.yaml /etc/fastpath/fastpath.yaml && systemctl restart fastpath`,
		Args: oneArg("FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			path := args[0]
			cfg, err := config.Load(path)
			if err == nil {
				// the guard's list files, line by line, as the daemon reads them
				_, err = guard.Load(guard.SpecOf(cfg.Guard))
				// the dashboard's token as the daemon reads it; a file this
				// user may not read (the daemon runs as root) is not judged
				if d := cfg.Dashboard; d.Listen != "" && d.Write {
					if _, terr := dashboard.LoadToken(d.TokenFile); terr != nil && !errors.Is(terr, fs.ErrPermission) {
						err = errors.Join(err, terr)
					}
				}
			}
			if out.asJSON() {
				res := checkResult{File: path, OK: err == nil, Errors: splitErrors(err)}
				if werr := out.writeJSON(cmd.OutOrStdout(), res); werr != nil {
					return werr
				}
				if err != nil {
					return &exitError{code: exitUsage} // reported in the JSON
				}
				return nil
			}
			if err != nil {
				return configError(err)
			}
			n := len(cfg.Interfaces)
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (%d interface%s)\n", path, n, plural(n))
			return err
		},
	}
	out.register(cmd, "p")
	return cmd
}

// splitErrors lists the problems of a (possibly joined) error; never nil,
// so the JSON says [] rather than null.
func splitErrors(err error) []string {
	out := []string{}
	if err == nil {
		return out
	}
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) {
		for _, e := range joined.Unwrap() {
			out = append(out, e.Error())
		}
		return out
	}
	return append(out, err.Error())
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
