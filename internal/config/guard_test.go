package config

import (
	"strings"
	"testing"
)

const guardBase = "version: 1\ninterfaces:\n  - {name: r0, mode: route}\n"

func TestGuardEnabled(t *testing.T) {
	c, err := Parse([]byte(guardBase+"guard:\n  deny: [198.18.0.0/16]\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Guard.Enabled() {
		t.Error("guard not enabled")
	}
	if c, err = Parse([]byte(guardBase), "c.yaml"); err != nil || c.Guard.Enabled() {
		t.Errorf("empty guard: enabled %v, %v", c.Guard.Enabled(), err)
	}
}

func TestGuardParseErrors(t *testing.T) {
	tests := []struct {
		name, yaml string
		want       []string
	}{
		{"bad prefix", "guard:\n  deny: [198.18.0.0/33, nonsense]\n", []string{
			`c.yaml:5: guard.deny[0]: "198.18.0.0/33" is not an IP prefix`,
			`c.yaml:5: guard.deny[1]: "nonsense" is not an IP address or prefix`}},
		{"host bits", "guard:\n  allow: [198.18.0.1/24]\n", []string{
			`c.yaml:5: guard.allow[0]: "198.18.0.1/24" has host bits set; did you mean 198.18.0.0/24?`}},
		{"rate 0", "guard:\n  per_source:\n    packets: {rate: 0}\n", []string{
			`c.yaml:6: guard.per_source.packets.rate: 0 is out of range; allowed 1 to 1000000000 per second (leave the limit out for none)`}},
		{"burst only", "guard:\n  total:\n    syn: {burst: 5}\n", []string{
			`c.yaml:6: guard.total.syn.rate: 0 is out of range; allowed 1 to 1000000000 per second (leave the limit out for none)`}},
		{"absurd rate", "guard:\n  per_source:\n    syn: {rate: 99999999999}\n", []string{
			`c.yaml:6: guard.per_source.syn.rate: 99999999999 is out of range; allowed 1 to 1000000000 per second (leave the limit out for none)`}},
		{"absurd burst", "guard:\n  per_source:\n    syn: {rate: 1, burst: 100000}\n", []string{
			`c.yaml:6: guard.per_source.syn.burst: 100000 is more than 1h0m0s at rate 1`}},
		{"burst past a Duration", "guard:\n  per_source:\n    packets: {rate: 1, burst: 10000000000}\n", []string{
			`c.yaml:6: guard.per_source.packets.burst: 10000000000 is more than 1h0m0s at rate 1`}},
		{"small byte burst", "guard:\n  per_source:\n    bytes: {rate: 100000, burst: 1500}\n", []string{
			`c.yaml:6: guard.per_source.bytes.burst: 1500 is below 65536`}},
		{"prefix length", "guard:\n  source_prefix: {ipv4: 0, ipv6: 129}\n", []string{
			`c.yaml:5: guard.source_prefix.ipv4: /0 is out of range; allowed 1 to 32 (default 32)`,
			`c.yaml:5: guard.source_prefix.ipv6: /129 is out of range; allowed 1 to 128 (default 64)`}},
		{"unknown key", "guard:\n  denied: []\n", nil},
		{"empty file", "guard:\n  deny_files: ['']\n", []string{`c.yaml:5: guard.deny_files[0]: empty file name`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(guardBase+tt.yaml), "c.yaml")
			if err == nil {
				t.Fatal("accepted")
			}
			if tt.want == nil {
				return
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("errors\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}
