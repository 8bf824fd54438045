package api

import (
	"encoding/json"
	"net/netip"
	"reflect"
	"testing"
)

func TestFlowJSON(t *testing.T) {
	ap := netip.MustParseAddrPort
	f := Flow{Proto: "udp", Family: "ipv6", Direction: "original",
		In:      Tuple{Src: ap("[fd00::2]:5353"), Dst: ap("[fd00:2::1]:53")},
		Out:     Tuple{Src: ap("[fd00::2]:5353"), Dst: ap("[fd00:2::1]:53")},
		Ingress: "lan0", Egress: "wan0", Packets: 2, Bytes: 200}
	b, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	if nat, ok := m["nat"]; !ok || nat != nil {
		t.Errorf("nat = %v (present %v), want null: %s", nat, ok, b)
	}
	in := m["in"].(map[string]any)
	want := map[string]any{"src": "fd00::2", "sport": 5353.0, "dst": "fd00:2::1", "dport": 53.0}
	if !reflect.DeepEqual(in, want) {
		t.Errorf("in = %v, want %v", in, want)
	}
	var back Flow
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(back, f) {
		t.Errorf("round trip = %+v, %v; want %+v", back, err, f)
	}

	f.NAT = "snat"
	b, _ = json.Marshal(f)
	json.Unmarshal(b, &m)
	if m["nat"] != "snat" {
		t.Errorf("nat = %v, want snat", m["nat"])
	}
}

// A newer client reads what an older daemon sent.
func TestFlowJSONOldForm(t *testing.T) {
	old := `{"proto":"tcp","in":{"src":"198.18.1.2:40000","dst":"198.18.2.1:443"},"out":{"src":"198.18.2.254:40000","dst":"198.18.2.1:443"},"nat":""}`
	var f Flow
	if err := json.Unmarshal([]byte(old), &f); err != nil {
		t.Fatal(err)
	}
	if f.In.Src != netip.MustParseAddrPort("198.18.1.2:40000") || f.Out.Dst != netip.MustParseAddrPort("198.18.2.1:443") || f.NAT != "" {
		t.Errorf("old form read as %+v", f)
	}
}
