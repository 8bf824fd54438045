package api

import (
	"cmp"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

// TestFlowQuery: the filter selects connections by their original
// direction (a reply flow matches by its connection's client), the limit
// keeps exactly the largest flows, CountOnly keeps none but counts.
func TestFlowQuery(t *testing.T) {
	all := testFlows() // a TCP original lan0->wan0 (9000 B), a UDP reply r1->r0 (100 B)
	for _, c := range []struct {
		name string
		q    FlowQuery
		want []uint64 // bytes of the flows answered, in order
		tot  int
	}{
		{"all", FlowQuery{}, []uint64{9000, 100}, 2},
		{"limit 1", FlowQuery{Limit: 1}, []uint64{9000}, 2},
		{"count only", FlowQuery{Limit: CountOnly}, []uint64{}, 2},
		{"proto udp", FlowQuery{Filter: FlowFilter{Proto: "udp"}}, []uint64{100}, 1},
		// The UDP flow is a reply: its connection's client is fd00:1::2:5353.
		{"reply by client", FlowQuery{Filter: FlowFilter{Src: netip.MustParsePrefix("fd00:1::/64"), Sport: 5353}}, []uint64{100}, 1},
		{"reply by server port", FlowQuery{Filter: FlowFilter{Dport: 53}}, []uint64{100}, 1},
		{"prefix", FlowQuery{Filter: FlowFilter{Src: netip.MustParsePrefix("10.0.0.0/8"), Dst: netip.MustParsePrefix("198.18.2.1/32")}}, []uint64{9000}, 1},
		{"no match", FlowQuery{Filter: FlowFilter{Proto: "tcp", Dport: 80}}, []uint64{}, 0},
	} {
		got := c.q.Apply(all)
		var bytes []uint64
		for _, f := range got.Flows {
			bytes = append(bytes, f.Bytes)
		}
		if !slices.Equal(bytes, c.want) && !(len(bytes) == 0 && len(c.want) == 0) || got.Total != c.tot || got.Capacity != all.Capacity {
			t.Errorf("%s: bytes %v total %d, want %v total %d", c.name, bytes, got.Total, c.want, c.tot)
		}
	}

	// The heap keeps the true top N of many.
	var many Flows
	for range 1000 {
		many.Flows = append(many.Flows, Flow{Proto: "udp", Bytes: rand.Uint64N(1e6)})
	}
	got := FlowQuery{Limit: 10}.Apply(&many)
	sorted := slices.SortedFunc(slices.Values(many.Flows), func(a, b Flow) int { return cmp.Compare(b.Bytes, a.Bytes) })
	for i := range 10 {
		if got.Flows[i].Bytes != sorted[i].Bytes {
			t.Fatalf("top 10: %d-th is %d bytes, want %d", i, got.Flows[i].Bytes, sorted[i].Bytes)
		}
	}
}

// TestFlowQueryOverHTTP: the client sends the query, the server answers
// it, and bad parameters get a 400 naming them.
func TestFlowQueryOverHTTP(t *testing.T) {
	path := startServer(t, &fakeBackend{flows: testFlows()})
	c := NewClient(path)
	got, err := c.FlowsQuery(t.Context(), FlowQuery{Filter: FlowFilter{Proto: "tcp", Src: netip.MustParsePrefix("10.0.0.2/32"), Dport: 443}})
	if err != nil || got.Total != 1 || len(got.Flows) != 1 || got.Flows[0].Bytes != 9000 {
		t.Errorf("filtered: %+v, %v", got, err)
	}
	// want is as it appears in the JSON error body (quotes escaped).
	for q, want := range map[string]string{
		"/v1/flows?limit=x":        `limit: want a whole number`,
		"/v1/flows?proto=icmp":     `invalid proto \"icmp\"`,
		"/v1/flows?src=nonsense":   `invalid src \"nonsense\"`,
		"/v1/flows?dport=70000":    `invalid dport \"70000\"`,
		"/v1/flows?limit=-2":       `limit: want a whole number`,
		"/v1/flows?sport=0&dport=": `invalid sport \"0\"`,
	} {
		body, code := getStatus(t, path, q)
		if code != 400 || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d %s, want 400 with %q", q, code, body, want)
		}
	}
}

// getStatus GETs path from the server at socket and returns the body and
// the status code, whatever it is.
func getStatus(t *testing.T, socket, path string) (string, int) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://fastpath"+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := unixHTTPClient(socket).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body), resp.StatusCode
}
