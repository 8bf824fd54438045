package bench

import (
	"bytes"
	"strings"
	"testing"
)

func TestFloodOptions(t *testing.T) {
	var o FloodOptions
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	if o.Attach != "xdp" || o.Flows != defaultFloodFlows || o.Sources != defaultFloodSources || o.NewFlows != defaultFloodNewFlows {
		t.Errorf("defaults: %+v", o)
	}
	for _, bad := range []FloodOptions{
		{Attach: "xdp-generic"},
		{Sources: 1},
		{Sources: 200_000}, // beyond 198.18.0.0/15 from 198.18.64.0
		{LegitPPS: 10},
		{Flows: -1},
	} {
		if err := bad.defaults(); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

func TestFloodTable(t *testing.T) {
	rep := &FloodReport{Attach: "xdp", Flows: 1000, LegitPPS: 200000, Sources: 100000, NewFlows: 1000, Phases: []FloodPhase{
		{Guard: "off", LegitMpps: 0.2, LegitSentMpps: 0.2},
		{Guard: "off", Flood: true, LegitMpps: 0.02, LegitSentMpps: 0.2, LegitShare: 0.1, FloodMpps: 1, ConntrackGrowth: 9000},
		{Guard: "on", Flood: true, Error: "boom"},
	}}
	var b bytes.Buffer
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"10.0%", "9000", "error: boom", "guard on: total new flows 1000/s"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}
