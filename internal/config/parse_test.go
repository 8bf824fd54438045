package config

import (
	"reflect"
	"testing"
)

// TestParseErrors checks the exact message of every rule, and that all
// problems of a document are reported together.
func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want []string
	}{
		{"empty", "", []string{
			`c.yaml: config is empty; it needs at least "version: 1" and one interface`}},
		{"only comments", "# nothing\n", []string{
			`c.yaml: config is empty; it needs at least "version: 1" and one interface`}},
		{"null document", "---\n~\n", []string{
			`c.yaml: config is empty; it needs at least "version: 1" and one interface`}},
		{"syntax error", "version: 1\ninterfaces: [\n", []string{
			`c.yaml:2: invalid YAML: did not find expected node content`}},
		{"two documents", "version: 1\n---\nversion: 1\n", []string{
			`c.yaml:2: more than one YAML document; the config must be a single document`}},
		{"top level list", "- version: 1\n", []string{
			`c.yaml:1: expected a mapping of fields, got a list`}},
		{"missing version", "interfaces:\n  - {name: r0, mode: route}\n", []string{
			`c.yaml: version: required, must be 1`}},
		{"version 0", "version: 0\ninterfaces:\n  - {name: r0, mode: route}\n", []string{
			`c.yaml:1: version: unsupported version 0; must be 1`}},
		{"version 2", "version: 2\ninterfaces:\n  - {name: r0, mode: route}\n", []string{
			`c.yaml:1: version: unsupported version 2; must be 1`}},
		{"version float", "version: 1.0\ninterfaces:\n  - {name: r0, mode: route}\n", []string{
			`c.yaml:1: version: expected an integer, got number "1.0"`}},
		{"version too big", "version: 18446744073709551616\ninterfaces:\n  - {name: r0, mode: route}\n", []string{
			`c.yaml:1: version: unsupported version 18446744073709551616; must be 1`}},
		{"max_entries too big", "version: 1\ninterfaces:\n  - {name: r0}\nflows:\n  max_entries: 99999999999999999999999\n", []string{
			`c.yaml:5: flows.max_entries: 99999999999999999999999 is out of range; allowed 1024 to 16777216 (default 65536)`}},
		{"max_entries too small", "version: 1\ninterfaces:\n  - {name: r0}\nflows:\n  max_entries: -99999999999999999999999\n", []string{
			`c.yaml:5: flows.max_entries: -99999999999999999999999 is out of range; allowed 1024 to 16777216 (default 65536)`}},
		{"empty api.socket", "version: 1\ninterfaces:\n  - {name: r0}\napi:\n  socket: \"\"\n", []string{
			`c.yaml:5: api.socket: empty; give the socket's absolute path, or leave it out for the default /run/fastpath/fastpath.sock`}},
		{"version wrong type", "version: one\ninterfaces:\n  - {name: r0, mode: route}\n", []string{
			`c.yaml:1: version: expected an integer, got string "one"`}},
		{"no interfaces key", "version: 1\n", []string{
			`c.yaml: interfaces: at least one interface is required`}},
		{"empty interfaces", "version: 1\ninterfaces: []\n", []string{
			`c.yaml:2: interfaces: at least one interface is required`}},
		{"interfaces not a list", "version: 1\ninterfaces:\n  r0: route\n", []string{
			`c.yaml:3: interfaces: expected a list, got a mapping`}},
		{"interface not a mapping", "version: 1\ninterfaces:\n  - r0\n", []string{
			`c.yaml:3: interfaces[0]: expected a mapping of fields, got string "r0"`}},
		{"empty interface entry", "version: 1\ninterfaces:\n  -\n  - {name: r1, mode: bogus}\n", []string{
			`c.yaml:3: interfaces[0]: empty list entry; expected a mapping of fields`,
			`c.yaml:4: interfaces[1].mode (r1): unknown mode "bogus"; allowed: ` + allowedModes}},
		{"name missing", "version: 1\ninterfaces:\n  - mode: route\n", []string{
			`c.yaml:3: interfaces[0].name: required`}},
		{"name wrong type", "version: 1\ninterfaces:\n  - name: [r0]\n    mode: route\n", []string{
			`c.yaml:3: interfaces[0].name: expected a string, got a list`}},
		{"name too long", "version: 1\ninterfaces:\n  - {name: abcdefghijklmnop, mode: route}\n", []string{
			`c.yaml:3: interfaces[0].name: "abcdefghijklmnop" is not a valid Linux interface name: 16 bytes long, at most 15 allowed`}},
		{"name slash", "version: 1\ninterfaces:\n  - {name: a/b, mode: route}\n", []string{
			`c.yaml:3: interfaces[0].name: "a/b" is not a valid Linux interface name: contains "/" or ":"`}},
		{"name space", "version: 1\ninterfaces:\n  - {name: 'a b', mode: route}\n", []string{
			`c.yaml:3: interfaces[0].name: "a b" is not a valid Linux interface name: contains whitespace or a control character`}},
		{"name dot", "version: 1\ninterfaces:\n  - {name: ., mode: route}\n", []string{
			`c.yaml:3: interfaces[0].name: "." is not a valid Linux interface name: "." and ".." are reserved`}},
		{"name dotdot", "version: 1\ninterfaces:\n  - {name: .., mode: route}\n", []string{
			`c.yaml:3: interfaces[0].name: ".." is not a valid Linux interface name: "." and ".." are reserved`}},
		{"duplicate name", "version: 1\ninterfaces:\n  - {name: r0, mode: route}\n  - {name: r1, mode: route}\n  - {name: r0, mode: off}\n", []string{
			`c.yaml:5: interfaces[2].name: duplicate interface "r0" (also interfaces[0]); list each interface once`}},
		{"mode unknown", "version: 1\ninterfaces:\n  - name: r0\n    mode: Route\n", []string{
			`c.yaml:4: interfaces[0].mode (r0): unknown mode "Route"; allowed: ` + allowedModes}},
		{"mode wrong type", "version: 1\ninterfaces:\n  - name: r0\n    mode: [route]\n", []string{
			`c.yaml:4: interfaces[0].mode: expected a string, got a list`}},
		{"attach unknown", "version: 1\ninterfaces:\n  - {name: r0, mode: route}\n  - name: r1\n    mode: route\n    attach: native\n", []string{
			`c.yaml:6: interfaces[1].attach (r1): unknown attach method "native"; allowed: "auto" (default), "xdp", "xdp-generic", "tc"`}},
		{"unknown top key", "version: 1\ninterface:\n  - {name: r0, mode: route}\n", []string{
			`c.yaml: interfaces: at least one interface is required`,
			`c.yaml:2: interface: unknown field (did you mean "interfaces"?); allowed here: api, dashboard, flows, guard, interfaces, metrics, version`}},
		{"unknown interface key", "version: 1\ninterfaces:\n  - name: r0\n    mode: route\n    atach: xdp\n", []string{
			`c.yaml:5: interfaces[0].atach: unknown field (did you mean "attach"?); allowed here: attach, mode, name`}},
		{"unknown api key", "version: 1\ninterfaces:\n  - {name: r0, mode: route}\napi:\n  sock: /x\n", []string{
			`c.yaml:5: api.sock: unknown field (did you mean "socket"?); allowed here: socket`}},
		{"unknown key far from any", "version: 1\ninterfaces:\n  - {name: r0, mode: route, speed: 10}\n", []string{
			`c.yaml:3: interfaces[0].speed: unknown field; allowed here: attach, mode, name`}},
		{"duplicate key", "version: 1\nversion: 1\ninterfaces:\n  - {name: r0, mode: route}\n", []string{
			`c.yaml:2: version: duplicate key (first set at line 1)`}},
		{"merge key", "version: 1\ninterfaces:\n  - &a {name: r0, mode: route}\n  - <<: *a\n    name: r1\n", []string{
			`c.yaml:4: interfaces[1].<<: merge keys (<<) are not supported; write the fields out`}},
		{"api not a mapping", "version: 1\ninterfaces:\n  - {name: r0, mode: route}\napi: /x\n", []string{
			`c.yaml:4: api: expected a mapping of fields, got string "/x"`}},
		{"socket relative", "version: 1\ninterfaces:\n  - {name: r0, mode: route}\napi:\n  socket: fastpath.sock\n", []string{
			`c.yaml:5: api.socket: "fastpath.sock" must be an absolute path`}},
		{"socket too long", "version: 1\ninterfaces:\n  - {name: r0, mode: route}\napi:\n  socket: /" + string(make([]byte, 0)) + longName(110) + "\n", []string{
			`c.yaml:5: api.socket: path is 111 bytes; unix socket paths are limited to 107`}},
		{"flows not a mapping", "version: 1\ninterfaces:\n  - name: r0\nflows: 65536\n", []string{
			`c.yaml:4: flows: expected a mapping of fields, got integer "65536"`}},
		{"unknown flows key", "version: 1\ninterfaces:\n  - name: r0\nflows:\n  idle_timout: 30s\n  size: 10\n  max_entry: 2048\n", []string{
			`c.yaml:5: flows.idle_timout: unknown field (did you mean "idle_timeout"?); allowed here: idle_timeout, max_entries, revalidate, revalidate_always`,
			`c.yaml:6: flows.size: unknown field; allowed here: idle_timeout, max_entries, revalidate, revalidate_always`,
			`c.yaml:7: flows.max_entry: unknown field (did you mean "max_entries"?); allowed here: idle_timeout, max_entries, revalidate, revalidate_always`}},
		{"max_entries too small", flowsDoc("max_entries: 1023"), []string{
			`c.yaml:5: flows.max_entries: 1023 is out of range; allowed 1024 to 16777216 (default 65536)`}},
		{"max_entries too big", flowsDoc("max_entries: 16777217"), []string{
			`c.yaml:5: flows.max_entries: 16777217 is out of range; allowed 1024 to 16777216 (default 65536)`}},
		{"max_entries negative", flowsDoc("max_entries: -1"), []string{
			`c.yaml:5: flows.max_entries: -1 is out of range; allowed 1024 to 16777216 (default 65536)`}},
		{"max_entries zero", flowsDoc("max_entries: 0"), []string{
			`c.yaml:5: flows.max_entries: must be between 1024 and 16777216; leave it out for the default 65536`}},
		{"max_entries null", flowsDoc("max_entries:"), []string{
			`c.yaml:5: flows.max_entries: must be between 1024 and 16777216; leave it out for the default 65536`}},
		{"max_entries with unit", flowsDoc("max_entries: 64k"), []string{
			`c.yaml:5: flows.max_entries: expected an integer, got string "64k"`}},
		{"max_entries fraction", flowsDoc("max_entries: 1.5"), []string{
			`c.yaml:5: flows.max_entries: expected an integer, got number "1.5"`}},
		{"idle_timeout bare number", flowsDoc("idle_timeout: 30"), []string{
			`c.yaml:5: flows.idle_timeout: "30" has no unit; write e.g. "30s"`}},
		{"idle_timeout quoted number", flowsDoc(`idle_timeout: "45"`), []string{
			`c.yaml:5: flows.idle_timeout: "45" has no unit; write e.g. "45s"`}},
		{"idle_timeout bad unit", flowsDoc("idle_timeout: 1d"), []string{
			`c.yaml:5: flows.idle_timeout: "1d" is not a duration; write a number with a unit (ns, us, ms, s, m, h), e.g. "30s" or "1h30m"`}},
		{"idle_timeout list", flowsDoc("idle_timeout: [30s]"), []string{
			`c.yaml:5: flows.idle_timeout: expected a duration such as "30s", got a list`}},
		{"idle_timeout too short", flowsDoc("idle_timeout: 500ms"), []string{
			`c.yaml:5: flows.idle_timeout: 500ms is out of range; allowed 1s to 24h (default 30s)`}},
		{"idle_timeout too long", flowsDoc("idle_timeout: 25h"), []string{
			`c.yaml:5: flows.idle_timeout: 25h is out of range; allowed 1s to 24h (default 30s)`}},
		{"idle_timeout negative", flowsDoc("idle_timeout: -30s"), []string{
			`c.yaml:5: flows.idle_timeout: -30s is out of range; allowed 1s to 24h (default 30s)`}},
		{"idle_timeout zero", flowsDoc("idle_timeout: 0s"), []string{
			`c.yaml:5: flows.idle_timeout: must be between 1s and 24h; leave it out for the default 30s`}},
		{"metrics not a mapping", "version: 1\ninterfaces:\n  - name: r0\nmetrics: 127.0.0.1:9469\n", []string{
			`c.yaml:4: metrics: expected a mapping of fields, got string "127.0.0.1:9469"`}},
		{"unknown metrics key", "version: 1\ninterfaces:\n  - name: r0\nmetrics:\n  listen_addr: 127.0.0.1:9469\n", []string{
			`c.yaml:5: metrics.listen_addr: unknown field; allowed here: listen`}},
		{"metrics listen typo", "version: 1\ninterfaces:\n  - name: r0\nmetrics:\n  lisen: 127.0.0.1:9469\n", []string{
			`c.yaml:5: metrics.lisen: unknown field (did you mean "listen"?); allowed here: listen`}},
		{"metrics listen wrong type", metricsDoc("listen: [127.0.0.1:9469]"), []string{
			`c.yaml:5: metrics.listen: expected a string, got a list`}},
		{"metrics listen no port", metricsDoc("listen: 127.0.0.1"), []string{
			`c.yaml:5: metrics.listen: "127.0.0.1" is not host:port (missing port in address); write e.g. "127.0.0.1:9469" or "[::1]:9469"`}},
		{"metrics listen bare port", metricsDoc("listen: 9469"), []string{
			`c.yaml:5: metrics.listen: "9469" is not host:port (missing port in address); write e.g. "127.0.0.1:9469" or "[::1]:9469"`}},
		{"metrics listen ipv6 unbracketed", metricsDoc("listen: '::1:9469'"), []string{
			`c.yaml:5: metrics.listen: "::1:9469" is not host:port (too many colons in address); write e.g. "127.0.0.1:9469" or "[::1]:9469"`}},
		{"metrics listen port zero", metricsDoc("listen: 127.0.0.1:0"), []string{
			`c.yaml:5: metrics.listen: port "0" is not a port number; allowed 1 to 65535`}},
		{"metrics listen port too big", metricsDoc("listen: 127.0.0.1:65536"), []string{
			`c.yaml:5: metrics.listen: port "65536" is not a port number; allowed 1 to 65535`}},
		{"metrics listen port named", metricsDoc("listen: 127.0.0.1:http"), []string{
			`c.yaml:5: metrics.listen: port "http" is not a port number; allowed 1 to 65535`}},
		{"metrics listen port empty", metricsDoc("listen: '127.0.0.1:'"), []string{
			`c.yaml:5: metrics.listen: port "" is not a port number; allowed 1 to 65535`}},
		{"metrics listen host name", metricsDoc("listen: localhost:9469"), []string{
			`c.yaml:5: metrics.listen: host "localhost" is not an IP address; write an address such as "127.0.0.1" or "::1", or leave it empty (":9469") for every address`}},
		{"metrics listen bad host and port", metricsDoc("listen: router:-1"), []string{
			`c.yaml:5: metrics.listen: host "router" is not an IP address; write an address such as "127.0.0.1" or "::1", or leave it empty (":9469") for every address`,
			`c.yaml:5: metrics.listen: port "-1" is not a port number; allowed 1 to 65535`}},
		{"all problems at once", `interfaces:
  - name: r0
  - name: r0
    mode: offlaod
  - name: bad name
    mode: route
    attach: fast
flows:
  max_entries: 10
  idle_timeout: 30
api:
  socket: rel
metrics:
  listen: 9469
`, []string{
			`c.yaml: version: required, must be 1`,
			`c.yaml:3: interfaces[1].name: duplicate interface "r0" (also interfaces[0]); list each interface once`,
			`c.yaml:4: interfaces[1].mode (r0): unknown mode "offlaod"; allowed: ` + allowedModes,
			`c.yaml:5: interfaces[2].name: "bad name" is not a valid Linux interface name: contains whitespace or a control character`,
			`c.yaml:7: interfaces[2].attach (bad name): unknown attach method "fast"; allowed: "auto" (default), "xdp", "xdp-generic", "tc"`,
			`c.yaml:9: flows.max_entries: 10 is out of range; allowed 1024 to 16777216 (default 65536)`,
			`c.yaml:10: flows.idle_timeout: "30" has no unit; write e.g. "30s"`,
			`c.yaml:12: api.socket: "rel" must be an absolute path`,
			`c.yaml:14: metrics.listen: "9469" is not host:port (missing port in address); write e.g. "127.0.0.1:9469" or "[::1]:9469"`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse([]byte(tt.yaml), "c.yaml")
			if err == nil {
				t.Fatalf("Parse succeeded: %+v", c)
			}
			if c != nil {
				t.Errorf("Parse returned a config with an error")
			}
			if got := errLines(err); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("errors:\ngot  %q\nwant %q", got, tt.want)
			}
		})
	}
}

// flowsDoc is a valid config but for one line in its flows section (line 5).
func flowsDoc(line string) string {
	return "version: 1\ninterfaces:\n  - name: r0\nflows:\n  " + line + "\n"
}

// metricsDoc is a valid config but for one line in its metrics section (line 5).
func metricsDoc(line string) string {
	return "version: 1\ninterfaces:\n  - name: r0\nmetrics:\n  " + line + "\n"
}

func longName(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'x'
	}
	return string(b)
}

// FuzzParse checks that no input panics, and that whatever Parse accepts
// also passes Validate.
func FuzzParse(f *testing.F) {
	f.Add([]byte(validYAML))
	f.Add([]byte("version: 1\ninterfaces:\n  - &a {name: r0, mode: route}\n  - *a\n"))
	f.Add([]byte("version: [\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("version: 1\ninterfaces: [{name: r0}]\nflows: {max_entries: 1024, idle_timeout: 1h}\n"))
	f.Add([]byte("version: 1\ninterfaces: [{name: r0}]\nmetrics: {listen: \"[fe80::1%r0]:9469\"}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, "fuzz.yaml")
		if (c == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v", c, err)
		}
		if c != nil {
			if err := c.Validate(); err != nil {
				t.Fatalf("accepted config fails Validate: %v", err)
			}
		}
	})
}
