package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/fastpath-router/fastpath/internal/api"
)

type fakeGuardBackend struct {
	fakeBackend
	calls []string
}

func (f *fakeGuardBackend) Guard(_ context.Context, q api.GuardQuery) (*api.Guard, error) {
	g := &api.Guard{AllowEntries: 0, DenyEntries: 1,
		Allow: []api.GuardEntry{}, Deny: []api.GuardEntry{},
		Interfaces: []api.GuardInterface{{Name: "r0", Ifindex: 3, Dropped: map[string]uint64{"deny": 5, "rate_pkt": 0},
			DroppedBytes: map[string]uint64{"deny": 300}, Allowed: 2}},
		Top: []api.GuardSource{{Source: "198.18.0.1/32", Packets: 5, Bytes: 300, Reason: "deny"}},
	}
	if q.Entries {
		g.Deny = append(g.Deny, api.GuardEntry{Prefix: "198.18.0.0/16", Origin: "config", Packets: 5, Bytes: 300})
	}
	return g, nil
}

func (f *fakeGuardBackend) GuardChange(_ context.Context, add bool, list string, ps []string) (*api.GuardChangeResult, error) {
	if ps[0] == "bogus" {
		return nil, &api.RequestError{Code: http.StatusBadRequest, Err: errors.New(`"bogus" is not an IP address or prefix`)}
	}
	verb := "del"
	if add {
		verb = "add"
	}
	f.calls = append(f.calls, verb+" "+list+" "+strings.Join(ps, " "))
	return &api.GuardChangeResult{List: list, Changed: ps}, nil
}

func TestGuardCLI(t *testing.T) {
	b := &fakeGuardBackend{}
	sock := serve(t, b)
	code, out, _ := run(t, "guard", "list", "--socket", sock)
	want := `allow list: 0 entries
deny list: 1 entries
  198.18.0.0/16                               config             5 pkts            300 bytes
r0: dropped deny=5; allowed 2
most dropped sources (sampled: one drop in 16 counts 16, so estimates):
  198.18.0.1/32                                          5 pkts            300 bytes  deny
`
	if code != 0 || out != want {
		t.Errorf("guard list: code %d\n%s\nwant\n%s", code, out, want)
	}
	code, out, _ = run(t, "guard", "list", "--socket", sock, "--no-entries")
	if want := strings.Replace(want, "  198.18.0.0/16                               config             5 pkts            300 bytes\n", "", 1); code != 0 || out != want {
		t.Errorf("guard list --no-entries: code %d\n%s\nwant\n%s", code, out, want)
	}
	code, out, _ = run(t, "guard", "list", "--socket", sock, "--json")
	var g api.Guard
	if err := json.Unmarshal([]byte(out), &g); err != nil || code != 0 || len(g.Deny) != 1 || strings.Count(out, "\n") != 1 {
		t.Errorf("guard list --json: code %d %v, want one line\n%s", code, err, out)
	}
	code, out, _ = run(t, "guard", "add", "deny", "198.18.5.0/24", "fd00:bad::/48", "--socket", sock)
	if code != 0 || out != "198.18.5.0/24 added to the deny list\nfd00:bad::/48 added to the deny list\n" {
		t.Errorf("guard add: code %d\n%s", code, out)
	}
	code, _, _ = run(t, "guard", "del", "allow", "198.18.5.7", "--socket", sock)
	if code != 0 || len(b.calls) != 2 || b.calls[1] != "del allow 198.18.5.7" {
		t.Errorf("guard del: code %d, calls %q", code, b.calls)
	}
	code, _, errOut := run(t, "guard", "add", "deny", "bogus", "--socket", sock)
	if code == 0 || !strings.Contains(errOut, `"bogus" is not an IP address or prefix`) {
		t.Errorf("bad prefix: code %d, %s", code, errOut)
	}
	// Without --socket, $FASTPATH_SOCKET names the daemon, as for every
	// command that talks to one (-n is TestNetnsFlag's).
	t.Setenv(api.SocketEnv, sock)
	for _, args := range [][]string{{"guard", "list"}, {"guard", "add", "deny", "198.18.6.0/24"}, {"guard", "del", "deny", "198.18.6.0/24"}} {
		if code, _, errOut := run(t, args...); code != 0 {
			t.Errorf("%v with %s: exit %d, %s", args, api.SocketEnv, code, errOut)
		}
	}
	for _, args := range [][]string{{"guard", "add"}, {"guard", "add", "deny"}, {"guard", "add", "block", "198.18.0.0/16"}, {"guard", "list", "--top", "-1"}} {
		if code, _, _ := run(t, append(args, "--socket", sock)...); code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage)", args, code)
		}
	}
}

func TestTopGuardRates(t *testing.T) {
	at := func(deny, syn uint64) *api.Guard {
		return &api.Guard{Interfaces: []api.GuardInterface{{Name: "r0", Dropped: map[string]uint64{"deny": deny, "syn_total": syn, "rate_pkt": 0}}}}
	}
	var b strings.Builder
	writeGuardRates(&b, at(100, 10), at(2100, 510), 2)
	want := "\nDROPPED BY GUARD  PKT/S\ndeny              1.00k\nsyn_total           250\n"
	if b.String() != want {
		t.Errorf("got\n%q\nwant\n%q", b.String(), want)
	}
	b.Reset()
	writeGuardRates(&b, at(5, 5), at(5, 5), 1)
	writeGuardRates(&b, nil, at(5, 5), 1)
	if b.Len() != 0 {
		t.Errorf("nothing dropped, yet %q", b.String())
	}
}
