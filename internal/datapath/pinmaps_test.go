package datapath

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/cilium/ebpf"
)

// TestPinsReplacedThenAdopted: a map pinned with another layout (an older
// release's) makes the next load start fresh; once its pins are committed
// the load after it adopts every map again, the guard's included.
func TestPinsReplacedThenAdopted(t *testing.T) {
	requireRoot(t)
	dir, err := os.MkdirTemp("/sys/fs/bpf", "fastpath-pintest-")
	if err != nil {
		t.Skipf("no bpffs at /sys/fs/bpf: %v", err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	load := func() *Datapath {
		t.Helper()
		d, err := Load(Options{FlowEntries: 1024, PinDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := load()
	if d.Adopted() {
		t.Fatal("first load adopted pins")
	}
	if len(d.maps()) < 15 {
		t.Errorf("only %d maps pinned: %v", len(d.maps()), d.maps())
	}
	d.Close()

	// An older layout of the guard's per-CPU state.
	old, err := ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 32, MaxEntries: 1})
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, mapsDir, "fp_guard_cpus")
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := old.Pin(p); err != nil {
		t.Fatal(err)
	}
	old.Close()

	d = load()
	if d.Adopted() || !d.replaced {
		t.Fatalf("loaded over an incompatible pin: adopted %v, replaced %v", d.Adopted(), d.replaced)
	}
	if err := d.commitPinsOnce(); err != nil {
		t.Fatal(err)
	}
	d.Close()

	d = load()
	defer d.Close()
	if !d.Adopted() {
		t.Error("the load after the pins were committed did not adopt them")
	}
}
