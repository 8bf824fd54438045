package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/fastpath-router/fastpath/internal/bench"
)

// floodFlags are bench's flags of the flood scenario.
type floodFlags struct {
	on     bool
	attach string
	o      bench.FloodOptions
}

func (f *floodFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.BoolVar(&f.on, "flood", false, "run the guard's flood scenario instead (docs/guard.md): offloaded flows while 64-byte frames from many spoofed sources arrive, guard off and on")
	fl.StringVar(&f.attach, "flood-attach", "xdp", "the flood scenario's hook: xdp or tc")
	fl.IntVar(&f.o.Sources, "flood-sources", 100_000, "the flood's distinct source addresses")
	fl.Float64Var(&f.o.LegitPPS, "flood-legit-pps", 200_000, "the legitimate flows' paced rate, frames a second")
	fl.IntVar(&f.o.NewFlows, "flood-new-flows", 1000, "the guard's total new-flow limit when on, per second")
	fl.IntVar(&f.o.Queues, "flood-queues", 1, "receive queues of each veth end: 1, the flood and the legitimate flows share r0's queue and CPU; 2, each generator's CPU receives its own, as RSS spreads a NIC's")
}

// runFlood runs the flood scenario with bench's common flags (--name,
// --duration, --json; the first --flows value is the legitimate flow
// count).
func runFlood(cmd *cobra.Command, f floodFlags, o bench.Options, log *slog.Logger, stderr io.Writer, jsonFile string) error {
	fo := f.o
	fo.Name, fo.Attach, fo.Log, fo.Progress = o.Name, f.attach, log, stderr
	if cmd.Flags().Changed("duration") {
		fo.Duration = o.Duration
	}
	if cmd.Flags().Changed("flows") && len(o.Flows) > 0 {
		fo.Flows = o.Flows[0]
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	fo.Binary = exe
	ctx, stop := signalContext(cmd)
	defer stop()
	rep, err := bench.RunFlood(ctx, fo)
	if rep != nil {
		if werr := rep.WriteTable(cmd.OutOrStdout()); werr != nil {
			return werr
		}
		if jsonFile != "" {
			if jerr := rep.SaveJSON(jsonFile); jerr != nil {
				return jerr
			}
			fmt.Fprintf(cmd.OutOrStdout(), "raw results: %s\n", jsonFile)
		}
	}
	return err
}
