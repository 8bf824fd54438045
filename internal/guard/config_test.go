package guard

import (
	"testing"
	"time"

	"github.com/fastpath-router/fastpath/internal/config"
	"github.com/fastpath-router/fastpath/internal/datapath"
)

const guardBase = "version: 1\ninterfaces:\n  - {name: r0, mode: route}\n"

// TestDatapathConfig: the guard's config as the datapath takes it, with
// defaults filled.
func TestDatapathConfig(t *testing.T) {
	c, err := config.Parse([]byte(guardBase+`guard:
  allow: [198.18.1.7, "fd00:1::/64"]
  deny: [198.18.0.0/16]
  deny_files: [/etc/fastpath/deny.txt]
  source_prefix: {ipv6: 56}
  per_source:
    packets: {rate: 1000, burst: 2000}
    bytes: {rate: 1000000}
    syn: {rate: 10}
  total:
    new_flows: {rate: 50000, burst: 100000}
  event_interval: 250ms
`), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Guard.Enabled() {
		t.Error("guard not enabled")
	}
	got := DatapathConfig(c.Guard)
	want := datapath.GuardConfig{
		Prefix4: 32, Prefix6: 56,
		Packets:       datapath.GuardLimit{Rate: 1000, Burst: 2000},
		Bytes:         datapath.GuardLimit{Rate: 1000000, Burst: 1000000},
		SYN:           datapath.GuardLimit{Rate: 10, Burst: 10},
		NewFlowsTotal: datapath.GuardLimit{Rate: 50000, Burst: 100000},
		EventInterval: 250 * time.Millisecond,
	}
	if got != want {
		t.Errorf("datapath config\n got %+v\nwant %+v", got, want)
	}
	if s := SpecOf(c.Guard); len(s.Allow) != 2 || len(s.DenyFiles) != 1 {
		t.Errorf("spec %+v", s)
	}
	// nothing configured: off, defaults
	c, err = config.Parse([]byte(guardBase), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Guard.Enabled() {
		t.Error("empty guard enabled")
	}
	if d := DatapathConfig(c.Guard); d.Bytes.Rate != 0 || d.Prefix6 != 64 || d.EventInterval != time.Second {
		t.Errorf("defaults %+v", d)
	}
	// small byte rates get a burst that holds the largest packet
	c, err = config.Parse([]byte(guardBase+"guard:\n  per_source:\n    bytes: {rate: 1000}\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if b := DatapathConfig(c.Guard).Bytes.Burst; b != config.GuardMinBytesBurst {
		t.Errorf("bytes burst %d", b)
	}
}

// TestConfigBoundsFitTheDatapath: what the config accepts, the datapath
// can hold (config owns the user-facing bounds; the datapath checks its own).
func TestConfigBoundsFitTheDatapath(t *testing.T) {
	if config.GuardMaxRate > datapath.MaxGuardRate || config.GuardMaxByteRate > datapath.MaxGuardByteRate ||
		config.GuardMaxBurstTime > datapath.MaxGuardBurstTime || config.GuardMinBytesBurst < datapath.MinGuardBytesBurst {
		t.Errorf("config bounds exceed the datapath's")
	}
}
