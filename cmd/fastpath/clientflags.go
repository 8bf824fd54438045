package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/fastpath-router/fastpath/internal/api"
)

// clientFlags are the flags of commands that talk to the daemon: which
// daemon, and how to print its answer.
type clientFlags struct {
	connFlags
	outFlags
}

// register adds the flags; -p is --pretty unless the command has a use of
// its own for it (flows: -p is the protocol, as in conntrack).
func (f *clientFlags) register(cmd *cobra.Command) { f.registerWith(cmd, "p") }

func (f *clientFlags) registerWith(cmd *cobra.Command, prettyShort string) {
	f.connFlags.register(cmd)
	f.outFlags.register(cmd, prettyShort)
}

// outFlags choose JSON output, as ip -j and bpftool -j -p do.
type outFlags struct {
	json, pretty bool
}

func (f *outFlags) register(cmd *cobra.Command, prettyShort string) {
	cmd.Flags().BoolVarP(&f.json, "json", "j", false, "print JSON, one line")
	cmd.Flags().BoolVarP(&f.pretty, "pretty", prettyShort, false, "print JSON indented (implies --json)")
}

// asJSON reports whether JSON was asked for.
func (f *outFlags) asJSON() bool { return f.json || f.pretty }

// writeJSON prints v as JSON, indented with --pretty.
func (f *outFlags) writeJSON(w io.Writer, v any) error {
	return encodeJSON(w, v, f.pretty)
}

// connFlags say which daemon to talk to.
type connFlags struct {
	socket, netns string
	cmd           *cobra.Command
}

func (f *connFlags) register(cmd *cobra.Command) {
	f.cmd = cmd
	// The default shows in --help; whether the flag was given is what
	// counts (client): without it, -n or $FASTPATH_SOCKET decide.
	cmd.Flags().StringVar(&f.socket, "socket", api.DefaultSocket, "the daemon's API socket `PATH` (its config's api.socket); if not given: -n, else $"+api.SocketEnv+", else the default")
	cmd.Flags().StringVarP(&f.netns, "netns", "n", "", "talk to the daemon of network namespace `NAME` (socket "+api.NetnsSocket("NAME")+")")
}

// client returns a client for the daemon the flags name.
func (f *connFlags) client() (*api.Client, error) {
	sock, err := api.SocketChoice{Socket: f.socket, SocketSet: f.cmd.Flags().Changed("socket"), Netns: f.netns}.Resolve()
	if err != nil {
		return nil, usageError(f.cmd.CommandPath(), err)
	}
	return api.NewClient(sock), nil
}

// explain adds to an unreachable daemon of --netns where it must listen.
func (f *connFlags) explain(err error) error {
	if err != nil && f.netns != "" && errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w\nthe daemon of network namespace %s must have api.socket: %s in its config", err, f.netns, api.NetnsSocket(f.netns))
	}
	return err
}

// encodeJSON prints v as the API sent it: one line, or indented.
func encodeJSON(w io.Writer, v any, pretty bool) error {
	enc := json.NewEncoder(w)
	if pretty {
		enc.SetIndent("", "  ")
	}
	enc.SetEscapeHTML(false) // "->" in reload actions stays readable
	return enc.Encode(v)
}

// writeJSON prints v indented, for output that has no -j/-p choice.
func writeJSON(w io.Writer, v any) error { return encodeJSON(w, v, true) }
