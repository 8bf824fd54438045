package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

const validYAML = `# offload by default, one routed segment, one left alone
version: 1
interfaces:
  - name: wan0
  - name: lan0
    mode: offload
    attach: xdp
  - name: r1
    mode: route
  - name: mgmt0
    mode: off
    attach: tc
flows:
  max_entries: 262144
  idle_timeout: 2m30s
api:
  socket: /run/fp/api.sock
metrics:
  listen: 127.0.0.1:9469
`

func TestParseValid(t *testing.T) {
	c, err := Parse([]byte(validYAML), "ok.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Config{
		Version: 1,
		Interfaces: []Interface{
			{Name: "wan0", Mode: ModeOffload, Attach: AttachAuto},
			{Name: "lan0", Mode: ModeOffload, Attach: AttachXDP},
			{Name: "r1", Mode: ModeRoute, Attach: AttachAuto},
			{Name: "mgmt0", Mode: ModeOff, Attach: AttachTC},
		},
		Flows:   Flows{MaxEntries: 262144, IdleTimeout: Duration(150 * time.Second), Revalidate: Duration(DefaultRevalidate)},
		API:     API{Socket: "/run/fp/api.sock"},
		Metrics: Metrics{Listen: "127.0.0.1:9469"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestParseDefaults(t *testing.T) {
	for name, doc := range map[string]string{
		"left out":  "version: 1\ninterfaces:\n  - name: eth0\n",
		"null":      "version: 1\ninterfaces:\n  - name: eth0\n    mode:\n    attach:\nflows:\napi:\nmetrics:\n",
		"empty":     "version: 1\ninterfaces:\n  - {name: eth0}\nflows: {}\napi: {}\nmetrics: {}\n",
		"no listen": "version: 1\ninterfaces:\n  - {name: eth0}\nmetrics:\n  listen:\n",
	} {
		c, err := Parse([]byte(doc), "min.yaml")
		if err != nil {
			t.Fatalf("%s: Parse: %v", name, err)
		}
		want := &Config{
			Version:    1,
			Interfaces: []Interface{{Name: "eth0", Mode: ModeOffload, Attach: AttachAuto}},
			Flows:      Flows{MaxEntries: 65536, IdleTimeout: Duration(30 * time.Second), Revalidate: Duration(DefaultRevalidate)},
			API:        API{Socket: DefaultSocket},
		}
		if !reflect.DeepEqual(c, want) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", name, c, want)
		}
	}
}

func TestParseFlowBounds(t *testing.T) {
	for _, tt := range []struct {
		flows   string
		entries int
		idle    time.Duration
	}{
		{"{max_entries: 1024, idle_timeout: 1s}", 1024, time.Second},
		{"{max_entries: 16777216, idle_timeout: 24h}", 16777216, 24 * time.Hour},
		{"{idle_timeout: 1.5s}", DefaultMaxEntries, 1500 * time.Millisecond},
		{"{idle_timeout: \"1h30m\"}", DefaultMaxEntries, 90 * time.Minute},
		{"{max_entries: 0x10000}", 65536, DefaultIdleTimeout},
	} {
		doc := "version: 1\ninterfaces:\n  - name: eth0\nflows: " + tt.flows + "\n"
		c, err := Parse([]byte(doc), "c.yaml")
		if err != nil {
			t.Errorf("%s: %v", tt.flows, err)
			continue
		}
		if c.Flows.MaxEntries != tt.entries || c.Flows.IdleTimeout.Std() != tt.idle {
			t.Errorf("%s: got %+v, want %d, %v", tt.flows, c.Flows, tt.entries, tt.idle)
		}
	}
}

func TestParseMetricsListen(t *testing.T) {
	for _, addr := range []string{
		"127.0.0.1:9469", ":9469", "0.0.0.0:1", `"[::1]:65535"`, "'[::]:9469'", "'[fe80::1%eth0]:9469'", "10.0.0.1:09469",
	} {
		doc := "version: 1\ninterfaces:\n  - name: eth0\nmetrics:\n  listen: " + addr + "\n"
		c, err := Parse([]byte(doc), "c.yaml")
		if err != nil {
			t.Errorf("%s: %v", addr, err)
			continue
		}
		if want := strings.Trim(addr, `'"`); c.Metrics.Listen != want {
			t.Errorf("%s: got %q, want %q", addr, c.Metrics.Listen, want)
		}
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fastpath.yaml")
	if err := os.WriteFile(path, []byte(validYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err != nil {
		t.Fatalf("Load: %v", err)
	}

	missing := filepath.Join(dir, "nope.yaml")
	_, err := Load(missing)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load(missing) = %v, want a not-exist error naming the file", err)
	}

	// A relative list file is the config's neighbour, an absolute one stays.
	lists := filepath.Join(dir, "lists.yaml")
	yml := validYAML + "guard:\n  deny_files: [deny.txt, /etc/fastpath/abs.txt]\n  allow_files: [sub/allow.txt]\n"
	if err := os.WriteFile(lists, []byte(yml), 0o644); err != nil {
		t.Fatal(err)
	}
	var c *Config
	c, err = Load(lists)
	if err != nil {
		t.Fatalf("Load with list files: %v", err)
	}
	if want := []string{filepath.Join(dir, "deny.txt"), "/etc/fastpath/abs.txt"}; !slices.Equal(c.Guard.DenyFiles, want) {
		t.Errorf("deny_files %v, want %v", c.Guard.DenyFiles, want)
	}
	if want := []string{filepath.Join(dir, "sub/allow.txt")}; !slices.Equal(c.Guard.AllowFiles, want) {
		t.Errorf("allow_files %v, want %v", c.Guard.AllowFiles, want)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("version: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	if err == nil || !strings.HasPrefix(err.Error(), bad+": interfaces:") {
		t.Errorf("Load(bad) = %v, want an error starting with the file name", err)
	}
}

// errLines splits a (joined) error into its messages.
func errLines(err error) []string {
	if err == nil {
		return nil
	}
	return strings.Split(err.Error(), "\n")
}

func TestValidateProgrammatic(t *testing.T) {
	c := &Config{Version: 1, Interfaces: []Interface{{Name: "r0"}}}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate with zero mode, attach, flows and socket: %v", err)
	}
	c = &Config{
		Interfaces: []Interface{{Name: "r0", Mode: "bridge"}},
		Flows:      Flows{MaxEntries: 100, IdleTimeout: Duration(-time.Second), Revalidate: Duration(time.Millisecond)},
		API:        API{Socket: "x"},
		Metrics:    Metrics{Listen: "localhost"},
	}
	got := errLines(c.Validate())
	want := []string{
		"version: required, must be 1",
		`interfaces[0].mode (r0): unknown mode "bridge"; allowed: ` + allowedModes,
		"flows.max_entries: 100 is out of range; allowed 1024 to 16777216 (default 65536)",
		"flows.idle_timeout: -1s is out of range; allowed 1s to 24h (default 30s)",
		"flows.revalidate: 1ms is out of range; allowed 100ms to 1h (default 1s)",
		`api.socket: "x" must be an absolute path`,
		`metrics.listen: "localhost" is not host:port (missing port in address); write e.g. "127.0.0.1:9469" or "[::1]:9469"`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

const allowedModes = `"offload" (default: the firewall, conntrack and NAT decide, fastpath carries established flows), ` +
	`"route" (stateless forwarding that skips the firewall: trusted segments only), ` +
	`"off" (the kernel handles everything)`

func TestDurationYAML(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"30s", 30 * time.Second, ""},
		{"1h30m", 90 * time.Minute, ""},
		{"250ms", 250 * time.Millisecond, ""},
		{"-5s", -5 * time.Second, ""}, // range is Validate's job
		{"30", 0, `"30" has no unit; write e.g. "30s"`},
		{`"30"`, 0, `"30" has no unit; write e.g. "30s"`},
		{"1.5", 0, `"1.5" has no unit; write e.g. "1.5s"`},
		{"1e3", 0, `"1e3" has no unit; write e.g. "30s"`},
		{"0", 0, `"0" has no unit; write e.g. "30s"`},
		{"-5", 0, `"-5" has no unit; write e.g. "30s"`},
		{"inf", 0, `"inf" is not a duration; write a number with a unit (ns, us, ms, s, m, h), e.g. "30s" or "1h30m"`},
		{`""`, 0, `"" is not a duration; write a number with a unit (ns, us, ms, s, m, h), e.g. "30s" or "1h30m"`},
		{"1d", 0, `"1d" is not a duration; write a number with a unit (ns, us, ms, s, m, h), e.g. "30s" or "1h30m"`},
		{"soon", 0, `"soon" is not a duration; write a number with a unit (ns, us, ms, s, m, h), e.g. "30s" or "1h30m"`},
		{"[30s]", 0, `expected a duration such as "30s", got a list`},
	} {
		var d Duration
		err := yaml.Unmarshal([]byte(tt.in), &d)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v", tt.in, err)
		case tt.err != "" && (err == nil || err.Error() != tt.err):
			t.Errorf("%s: error %v, want %q", tt.in, err, tt.err)
		case d.Std() != tt.want:
			t.Errorf("%s: got %v, want %v", tt.in, d.Std(), tt.want)
		}
	}
}

func TestDurationString(t *testing.T) {
	for d, want := range map[time.Duration]string{
		30 * time.Second: "30s", 5 * time.Minute: "5m", 24 * time.Hour: "24h",
		90 * time.Minute: "1h30m", 1500 * time.Millisecond: "1.5s", 0: "0s",
		time.Hour + time.Second: "1h0m1s",
	} {
		if got := Duration(d).String(); got != want {
			t.Errorf("Duration(%v).String() = %q, want %q", time.Duration(d), got, want)
		}
	}
}

// A marshalled Config must parse back to itself (durations as strings).
func TestMarshalRoundTrip(t *testing.T) {
	c, err := Parse([]byte(validYAML), "ok.yaml")
	if err != nil {
		t.Fatal(err)
	}
	out, err := yaml.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "idle_timeout: 2m30s\n") {
		t.Errorf("idle_timeout not written as a duration string:\n%s", out)
	}
	back, err := Parse(out, "marshalled.yaml")
	if err != nil {
		t.Fatalf("Parse(Marshal(c)): %v\n%s", err, out)
	}
	if !reflect.DeepEqual(back, c) {
		t.Errorf("round trip:\ngot  %+v\nwant %+v", back, c)
	}
}

func TestBadIfname(t *testing.T) {
	for name, ok := range map[string]bool{
		"eth0": true, "r0.100": true, "br-lan": true, "a": true, "abcdefghijklmno": true,
		"abcdefghijklmnop": false, ".": false, "..": false, "a/b": false, "a:1": false,
		"a b": false, "a\tb": false, "a\x00b": false,
	} {
		if got := badIfname(name) == ""; got != ok {
			t.Errorf("badIfname(%q) valid = %v, want %v", name, got, ok)
		}
	}
}
