package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/fastpath-router/fastpath/internal/api"
	"github.com/fastpath-router/fastpath/internal/eventhub"
)

// eventKinds are the kinds --kind accepts, in the order the help lists them.
var eventKinds = []string{
	api.EventFlowAdded, api.EventFlowRemoved, api.EventAttach, api.EventDetach,
	api.EventWatchdog, api.EventReload, api.EventDropped, api.EventGuardDrop,
}

func newEventsCmd() *cobra.Command {
	var (
		f     connFlags
		kinds []string
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Stream what the daemon does, as JSON lines",
		Long: fmt.Sprintf(`Stream the daemon's events as they happen, one JSON object per line, as the
API sends them (GET /v1/events, see docs/api.md), until Ctrl-C. Every line
has "time" and "kind", plus the fields of its kind:

  flow_added    the datapath started forwarding a flow itself: "flow" (its
                tuples, NAT, ingress and egress), "interface" (the ingress)
  flow_removed  the datapath evicted a flow; "reason" says why, as a pass
                reason (docs/counters.md): tcp_close for a FIN or RST,
                no_conntrack when the conntrack entry is gone (flushed,
                deleted or timed out). Its next packets go through the
                kernel, which decides again
  attach        an interface was attached: "interface", "detail" (hook,
                mode and why that hook)
  detach        an interface was detached, or went away: "interface",
                "detail" (its state now)
  watchdog      the daemon's heartbeat went stale, so the datapath passes
                everything to the kernel, or it came back: "detail"
  reload        the config was reloaded: "detail"
  dropped       "dropped" events were lost for this reader: it read too
                slowly, or the rate limit refused them
  guard_drop    the guard dropped a packet (sampled: at most one per CPU per
                guard.event_interval): "interface", "reason" (docs/guard.md),
                "detail" (protocol, source and destination)

Events are rate limited (%d a second on average, bursts of %d), and a
reader that falls behind loses events instead of making the daemon wait, so
a flood of new flows costs neither the datapath nor the daemon more than a
bounded amount of work. Every loss is reported by a "dropped" line.

--kind filters in the client. "dropped" lines are always shown, since the
events lost may have been of the kinds asked for.

Exit status: 0 after Ctrl-C or SIGTERM, 1 if the daemon cannot be reached
or goes away (it stopped or restarted).`, eventhub.DefaultRate, eventhub.DefaultBurst),
		Example: `  fastpath events
  fastpath events --kind attach --kind detach --kind watchdog
  fastpath events --kind flow_removed | jq -r 'select(.reason == "no_conntrack") | .flow.in.src'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			show, err := kindFilter(kinds)
			if err != nil {
				return usageError(cmd.CommandPath(), err)
			}
			c, err := f.client()
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			err = c.Events(ctx, func(e api.Event) error {
				if !show(e.Kind) {
					return nil
				}
				return writeEvent(cmd.OutOrStdout(), e)
			})
			if ctx.Err() != nil {
				return nil // Ctrl-C or SIGTERM: the normal end
			}
			return f.explain(err)
		},
	}
	f.register(cmd)
	cmd.Flags().StringArrayVar(&kinds, "kind", nil,
		"show only events of this `KIND` (repeatable): "+strings.Join(eventKinds, ", "))
	return cmd
}

// kindFilter checks the --kind values and returns which kinds to show:
// all without --kind; dropped always.
func kindFilter(kinds []string) (func(string) bool, error) {
	if len(kinds) == 0 {
		return func(string) bool { return true }, nil
	}
	want := map[string]bool{api.EventDropped: true}
	for _, k := range kinds {
		if !slices.Contains(eventKinds, k) {
			return nil, fmt.Errorf("unknown event kind %q: use %s", k, strings.Join(eventKinds, ", "))
		}
		want[k] = true
	}
	return func(k string) bool { return want[k] }, nil
}

// writeEvent prints e as one JSON line, written at once so that a reader
// of a pipe sees it now; "->" in a detail stays readable.
func writeEvent(w io.Writer, e api.Event) error {
	var line bytes.Buffer
	enc := json.NewEncoder(&line)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(e); err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	if _, err := w.Write(line.Bytes()); err != nil {
		return fmt.Errorf("write event: %w", err)
	}
	return nil
}
