package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fastpath-router/fastpath/internal/api"
)

const validYAML = `# two routed interfaces
version: 1
interfaces:
  - name: r0
    mode: route
    attach: xdp
  - name: r1
    mode: route
  - name: mgmt0
    mode: off
    attach: tc
api:
  socket: /run/fp/api.sock
`

func TestParseValid(t *testing.T) {
	c, err := Parse([]byte(validYAML), "ok.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Config{
		Version: 1,
		Interfaces: []Interface{
			{Name: "r0", Mode: ModeRoute, Attach: AttachXDP},
			{Name: "r1", Mode: ModeRoute, Attach: AttachAuto},
			{Name: "mgmt0", Mode: ModeOff, Attach: AttachTC},
		},
		API: API{Socket: "/run/fp/api.sock"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestParseDefaults(t *testing.T) {
	c, err := Parse([]byte("version: 1\ninterfaces:\n  - {name: eth0, mode: route}\n"), "min.yaml")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if c.Interfaces[0].Attach != AttachAuto {
		t.Errorf("attach = %q, want %q", c.Interfaces[0].Attach, AttachAuto)
	}
	if c.API.Socket != api.DefaultSocket {
		t.Errorf("api.socket = %q, want %q", c.API.Socket, api.DefaultSocket)
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
	c := &Config{Version: 1, Interfaces: []Interface{{Name: "r0", Mode: ModeRoute}}}
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate with zero attach and socket: %v", err)
	}
	c = &Config{Interfaces: []Interface{{Name: "r0"}}, API: API{Socket: "x"}}
	got := errLines(c.Validate())
	want := []string{
		"version: required, must be 1",
		`interfaces[0].mode (r0): required; choose "route" (stateless FIB forwarding that skips the firewall) or "off" — "offload", the conntrack-aware default, is not available yet`,
		`api.socket: "x" must be an absolute path`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
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
