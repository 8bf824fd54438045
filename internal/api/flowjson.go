package api

import (
	"encoding/json"
	"fmt"
	"net/netip"
)

// The JSON of a Tuple gives addresses and ports as fields of their own,
// as tools want them (jq, conntrack's -o json):
//
//	{"src": "198.18.1.2", "sport": 40000, "dst": "198.18.2.1", "dport": 443}
//
// Before, src and dst were "addr:port" strings; UnmarshalJSON still reads
// those, so a newer client can talk to an older daemon.
type tupleJSON struct {
	Src   *netip.Addr `json:"src"`
	Sport uint16      `json:"sport"`
	Dst   *netip.Addr `json:"dst"`
	Dport uint16      `json:"dport"`
}

// MarshalJSON writes the tuple with separate address and port fields; a
// missing address is null.
func (t Tuple) MarshalJSON() ([]byte, error) {
	j := tupleJSON{Sport: t.Src.Port(), Dport: t.Dst.Port()}
	if a := t.Src.Addr(); a.IsValid() {
		j.Src = &a
	}
	if a := t.Dst.Addr(); a.IsValid() {
		j.Dst = &a
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads the current form and the older "addr:port" strings.
func (t *Tuple) UnmarshalJSON(b []byte) error {
	var raw struct {
		Src   json.RawMessage `json:"src"`
		Sport uint16          `json:"sport"`
		Dst   json.RawMessage `json:"dst"`
		Dport uint16          `json:"dport"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	src, err := endpoint(raw.Src, raw.Sport)
	if err != nil {
		return fmt.Errorf("tuple src: %w", err)
	}
	dst, err := endpoint(raw.Dst, raw.Dport)
	if err != nil {
		return fmt.Errorf("tuple dst: %w", err)
	}
	*t = Tuple{Src: src, Dst: dst}
	return nil
}

// endpoint reads an address (with port beside it) or an old "addr:port".
func endpoint(raw json.RawMessage, port uint16) (netip.AddrPort, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return netip.AddrPort{}, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return netip.AddrPort{}, err
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.AddrPortFrom(a, port), nil
	}
	return netip.ParseAddrPort(s)
}

// flowAlias has Flow's fields without its methods.
type flowAlias Flow

// flowJSON shadows NAT: null when there is none (the outer field wins
// over the embedded one of the same JSON name).
type flowJSON struct {
	flowAlias
	NAT *string `json:"nat"`
}

// MarshalJSON writes "nat": null for a flow without NAT.
func (f Flow) MarshalJSON() ([]byte, error) {
	j := flowJSON{flowAlias: flowAlias(f)}
	if f.NAT != "" {
		j.NAT = &f.NAT
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads "nat" as null or a string ("" from older daemons).
func (f *Flow) UnmarshalJSON(b []byte) error {
	var j flowJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*f = Flow(j.flowAlias)
	f.NAT = ""
	if j.NAT != nil {
		f.NAT = *j.NAT
	}
	return nil
}
