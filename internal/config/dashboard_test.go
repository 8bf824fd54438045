package config

import (
	"reflect"
	"testing"
)

func TestParseDashboard(t *testing.T) {
	doc := "version: 1\ninterfaces:\n  - name: eth0\ndashboard:\n  listen: 127.0.0.1:9469\n  write: true\n  token_file: /etc/fastpath/dashboard.token\n"
	c, err := Parse([]byte(doc), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Dashboard{Listen: "127.0.0.1:9469", Write: true, TokenFile: "/etc/fastpath/dashboard.token"}
	if c.Dashboard != want {
		t.Errorf("got %+v, want %+v", c.Dashboard, want)
	}
	// Left out: no dashboard.
	c, err = Parse([]byte("version: 1\ninterfaces:\n  - name: eth0\n"), "c.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Dashboard != (Dashboard{}) {
		t.Errorf("default dashboard %+v, want none", c.Dashboard)
	}
}

func TestValidateDashboard(t *testing.T) {
	for _, tt := range []struct {
		d    Dashboard
		want []string
	}{
		{Dashboard{}, nil},
		{Dashboard{Listen: "0.0.0.0:9470"}, nil}, // allowed; the daemon warns
		{Dashboard{Listen: "127.0.0.1:9469"}, []string{
			`dashboard.listen: "127.0.0.1:9469" takes metrics.listen's port ("127.0.0.1:9469"); give the dashboard its own port`}},
		{Dashboard{Listen: "[::1]:1", TokenFile: "/t"}, nil},
		{Dashboard{Listen: "localhost:9469"}, []string{
			`dashboard.listen: host "localhost" is not an IP address; write an address such as "127.0.0.1" or "::1", or leave it empty (":9469") for every address`}},
		{Dashboard{Listen: "127.0.0.1:0"}, []string{
			`dashboard.listen: port "0" is not a port number; allowed 1 to 65535`}},
		{Dashboard{Listen: "127.0.0.1:9470", Write: true}, []string{
			"dashboard.token_file: required when dashboard.write is true: write actions need a token"}},
		{Dashboard{Listen: "127.0.0.1:9470", TokenFile: "token"}, []string{
			`dashboard.token_file: "token" must be an absolute path`}},
		{Dashboard{Write: true, TokenFile: "/t"}, []string{
			"dashboard.write: dashboard.listen is empty: there is no dashboard to write through"}},
	} {
		c := &Config{Version: 1, Interfaces: []Interface{{Name: "r0"}}, Dashboard: tt.d, Metrics: Metrics{Listen: "127.0.0.1:9469"}}
		if got := errLines(c.Validate()); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%+v:\ngot  %q\nwant %q", tt.d, got, tt.want)
		}
	}
}

// TestListensOverlap: the dashboard and metrics may not take one port on
// any address.
func TestListensOverlap(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		want bool
	}{
		{"127.0.0.1:9469", "127.0.0.1:9469", true},
		{":9469", "127.0.0.1:9469", true},
		{"127.0.0.1:9469", ":9469", true},
		{"0.0.0.0:9469", "192.0.2.1:9469", true},
		{"[::]:9469", "[::1]:9469", true},
		{"[::]:9469", "127.0.0.1:9469", true},
		{"0.0.0.0:9469", "[::1]:9469", false},
		{"127.0.0.1:9469", "127.0.0.2:9469", false},
		{"127.0.0.1:9469", "127.0.0.1:9470", false},
		{"127.0.0.1:9469", "", false},
	} {
		if got := listensOverlap(tt.a, tt.b); got != tt.want {
			t.Errorf("listensOverlap(%q, %q) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
