package datapath

import (
	"os"
	"slices"
	"testing"
)

// testFlowEntries sizes the flow cache of the tests' datapaths.
const testFlowEntries = 65536

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (loads BPF programs); CI runs it as root")
	}
}

func TestLoad(t *testing.T) {
	requireRoot(t)
	d, err := Load(Options{FlowEntries: testFlowEntries})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	names := d.ReasonNames()
	if len(names) == 0 || names[0] != "not_ip" || !slices.Contains(names, "ttl") || !slices.Contains(names, "not_accepted") {
		t.Fatalf("reason names from BTF: %v", names)
	}
}

// BenchmarkLoad: loading the object, the verifier's time mostly.
func BenchmarkLoad(b *testing.B) {
	requireRoot(b)
	for b.Loop() {
		d, err := Load(Options{FlowEntries: testFlowEntries})
		if err != nil {
			b.Fatal(err)
		}
		d.Close()
	}
}
