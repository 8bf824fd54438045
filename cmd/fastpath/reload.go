package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fastpath-router/fastpath/internal/api"
)

// reloadTimeout bounds a reload, which may attach and detach interfaces.
const reloadTimeout = time.Minute

// reloadRefused is reload's --json output for an invalid config: the
// API's error body.
type reloadRefused struct {
	Error  string   `json:"error"`
	Errors []string `json:"errors"`
}

// reloadPartial is reload's --json output after a reload that failed in
// part: what it did, and the error, as the API answers it.
type reloadPartial struct {
	api.ReloadResult
	Error string `json:"error,omitempty"`
}

func newReloadCmd() *cobra.Command {
	var f clientFlags
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Make the daemon reread its config file and apply the difference",
		Long: `Ask the running daemon to read its config file again (the one it was started
with; 'fastpath status' shows it) and apply the difference to the running
state, then print each action it took, or "no change".

The file is checked in full first, as 'fastpath check-config' does. If it
is invalid, or changes a setting that needs a restart (api.socket, the
flows section, metrics), the daemon changes nothing and keeps running as it
was: every problem is printed, and the exit status is 2. If applying a
valid file fails for an interface (it cannot attach as asked, say), that
interface keeps its previous state: the actions taken are printed, then
the error, and the exit status is 1.

Sending SIGHUP to the daemon reloads the same way; the outcome then goes
to the daemon's log only.

Exit status: 0 after a reload or when nothing changed, 1 if the daemon
cannot be reached or failed to apply part of the change, 2 if the config
is invalid or needs a restart.`,
		Example: `  fastpath check-config /etc/fastpath/fastpath.yaml && fastpath reload
  fastpath reload -j | jq -r '.actions[]'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), reloadTimeout)
			defer cancel()
			c, err := f.client()
			if err != nil {
				return err
			}
			res, err := c.Reload(ctx)
			var ce *api.ConfigError
			if errors.As(err, &ce) {
				return reloadInvalid(cmd.OutOrStdout(), ce, &f.outFlags)
			}
			if res == nil {
				return f.explain(err)
			}
			// A reload that failed in part: what it did, then the error.
			if f.asJSON() {
				out := reloadPartial{ReloadResult: *res}
				if err != nil {
					out.Error = err.Error()
				}
				if werr := f.writeJSON(cmd.OutOrStdout(), out); werr != nil {
					return werr
				}
				return err
			}
			return errors.Join(writeReload(cmd.OutOrStdout(), res), err)
		},
	}
	f.register(cmd)
	return cmd
}

// reloadInvalid reports a config the daemon refused, exit status 2.
func reloadInvalid(w io.Writer, ce *api.ConfigError, of *outFlags) error {
	if of.asJSON() {
		msg := ce.Error()
		if err := of.writeJSON(w, reloadRefused{Error: msg, Errors: lines(msg)}); err != nil {
			return err
		}
		return &exitError{code: exitUsage} // reported in the JSON
	}
	return &exitError{code: exitUsage, err: ce,
		hint: "reload refused: nothing was changed, the daemon keeps running as it was"}
}

func writeReload(w io.Writer, res *api.ReloadResult) error {
	if len(res.Actions) == 0 {
		msg := "no change"
		if res.Changed {
			msg = "reloaded"
		}
		_, err := fmt.Fprintln(w, msg)
		return err
	}
	n := len(res.Actions)
	fmt.Fprintf(w, "reloaded, %d action%s:\n", n, plural(n))
	for _, a := range res.Actions {
		if _, err := fmt.Fprintf(w, "  %s\n", a); err != nil {
			return err
		}
	}
	return nil
}

// lines splits a message into its non-empty lines; never nil.
func lines(msg string) []string {
	out := []string{}
	for l := range strings.SplitSeq(msg, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}
