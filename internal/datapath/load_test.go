package datapath

import (
	"os"
	"testing"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (loads BPF programs); CI runs it as root")
	}
}

func TestLoad(t *testing.T) {
	requireRoot(t)
	d, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	names := d.ReasonNames()
	if len(names) == 0 || names[0] != "not_ip" || names[len(names)-1] != "disabled" {
		t.Fatalf("reason names from BTF: %v", names)
	}
}
