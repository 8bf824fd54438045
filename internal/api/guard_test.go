package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

type fakeGuard struct {
	fakeBackend
	top     int
	changes []string
}

func (f *fakeGuard) Guard(_ context.Context, q GuardQuery) (*Guard, error) {
	f.top = q.Top
	return &Guard{AllowEntries: 1, DenyEntries: 1,
		Allow: []GuardEntry{{Prefix: "198.18.0.7/32", Origin: "config"}},
		Deny:  []GuardEntry{{Prefix: "198.18.0.0/16", Origin: "runtime", Packets: 5, Bytes: 300}},
		Interfaces: []GuardInterface{{Name: "r0", Ifindex: 3, Dropped: map[string]uint64{"deny": 5},
			DroppedBytes: map[string]uint64{"deny": 300}}},
		Top: []GuardSource{{Source: "198.18.0.1/32", Packets: 5, Bytes: 300, Reason: "deny"}},
	}, nil
}

func (f *fakeGuard) GuardChange(_ context.Context, add bool, list string, prefixes []string) (*GuardChangeResult, error) {
	switch {
	case list != "deny" && list != "allow":
		return nil, &RequestError{Code: http.StatusBadRequest, Err: errors.New(`unknown guard list "` + list + `"`)}
	case len(prefixes) > 0 && prefixes[0] == "198.18.1.0/24" && !add:
		return nil, &RequestError{Code: http.StatusConflict, Err: errors.New("198.18.1.0/24: listed by the config file")}
	}
	f.changes = append(f.changes, strings.Join(append([]string{list}, prefixes...), " "))
	return &GuardChangeResult{List: list, Changed: prefixes}, nil
}

func TestGuardRoundTrip(t *testing.T) {
	b := &fakeGuard{}
	c := NewClient(startServer(t, b))
	ctx := context.Background()
	g, err := c.Guard(ctx, GuardQuery{Top: 7, Entries: true})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := b.Guard(ctx, GuardQuery{Top: 7})
	if !reflect.DeepEqual(g, want) || b.top != 7 {
		t.Errorf("got %+v (top %d), want %+v", g, b.top, want)
	}
	res, err := c.GuardChange(ctx, true, "deny", []string{"198.18.2.0/24", "fd00:bad::/48"})
	if err != nil || res.List != "deny" || len(res.Changed) != 2 {
		t.Fatalf("add: %+v %v", res, err)
	}
	if b.changes[0] != "deny 198.18.2.0/24 fd00:bad::/48" {
		t.Errorf("backend saw %q", b.changes)
	}
	_, err = c.GuardChange(ctx, true, "block", []string{"198.18.2.0/24"})
	if err == nil || !strings.Contains(err.Error(), `unknown guard list "block"`) || !strings.Contains(err.Error(), "HTTP 400") {
		t.Errorf("bad list: %v", err)
	}
	_, err = c.GuardChange(ctx, false, "deny", []string{"198.18.1.0/24"})
	if err == nil || !strings.Contains(err.Error(), "HTTP 409") {
		t.Errorf("config entry: %v", err)
	}
}

// TestGuardChangeTooMany: more prefixes than one request may carry are
// refused by the client before sending, and by the server with the limit
// named (Go's parser drops the whole query past it, list name included).
func TestGuardChangeTooMany(t *testing.T) {
	b := &fakeGuard{}
	c := NewClient(startServer(t, b))
	many := make([]string, MaxGuardChange+1)
	for i := range many {
		many[i] = fmt.Sprintf("198.18.%d.%d/32", i>>8, i&0xff)
	}
	if _, err := c.GuardChange(t.Context(), true, "deny", many); err == nil || !strings.Contains(err.Error(), "at most 9999") {
		t.Errorf("client: %v, want the limit named", err)
	}
	q := url.Values{"list": {"deny"}, "prefix": append(many, "198.19.0.0/16")}
	var res GuardChangeResult
	err := c.call(t.Context(), http.MethodPost, "/v1/guard/add?"+q.Encode(), &res)
	if err == nil || !strings.Contains(err.Error(), "HTTP 400") || !strings.Contains(err.Error(), "at most 9999 prefixes") {
		t.Errorf("server: %v, want a 400 naming the limit", err)
	}
	if len(b.changes) != 0 {
		t.Errorf("the backend was asked: %q", b.changes)
	}
}

// A backend without a guard has no guard endpoints.
func TestGuardAbsent(t *testing.T) {
	c := NewClient(startServer(t, &fakeBackend{}))
	if _, err := c.Guard(context.Background(), GuardQuery{Top: 1}); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("got %v, want a 404", err)
	}
}
