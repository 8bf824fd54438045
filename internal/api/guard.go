package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
)

// GuardBackend is what the guard endpoints need; a Backend that does not
// implement it has no guard endpoints (404).
type GuardBackend interface {
	// Guard returns the counters, the lists (q.Entries) and up to q.Top
	// dropped sources.
	Guard(ctx context.Context, q GuardQuery) (*Guard, error)
	// GuardChange adds (add) or removes prefixes of a list at run time.
	// Input errors are *RequestError; nothing changes then.
	GuardChange(ctx context.Context, add bool, list string, prefixes []string) (*GuardChangeResult, error)
}

// RequestError is a request the backend refuses as it stands: 400 (bad
// input) or 409 (conflicts with the daemon's state). Nothing changed.
type RequestError struct {
	Code int
	Err  error
}

func (e *RequestError) Error() string { return e.Err.Error() }
func (e *RequestError) Unwrap() error { return e.Err }

// GuardEntry is one prefix of a guard list.
type GuardEntry struct {
	Prefix  string `json:"prefix"`
	Origin  string `json:"origin"` // config | runtime
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// GuardInterface are one interface's guard counters.
type GuardInterface struct {
	Name    string `json:"name"`
	Ifindex int    `json:"ifindex"`
	// Dropped counts packets by drop reason (deny, rate_pkt, rate_byte,
	// syn_source, syn_total, new_source, new_total, new_unknown); every reason is
	// present.
	Dropped      map[string]uint64 `json:"dropped"`
	DroppedBytes map[string]uint64 `json:"dropped_bytes"`
	// Allowed: packets the allow list exempted.
	Allowed    uint64 `json:"allowed"`
	EventsLost uint64 `json:"events_lost"`
}

// GuardSource is a source (prefix of the bucket size) the guard dropped.
type GuardSource struct {
	Source  string `json:"source"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
	Reason  string `json:"reason"` // of its last drop
}

// GuardQuery says what GET /v1/guard should include besides the counters.
type GuardQuery struct {
	Top     int  // most dropped sources, 0 none
	Entries bool // the lists' entries (their sizes are always there)
}

// Guard is the guard's state.
type Guard struct {
	AllowEntries int              `json:"allow_entries"`
	DenyEntries  int              `json:"deny_entries"`
	Allow        []GuardEntry     `json:"allow"` // empty unless asked for
	Deny         []GuardEntry     `json:"deny"`
	Interfaces   []GuardInterface `json:"interfaces"`
	Top          []GuardSource    `json:"top"`
}

// MaxGuardChange is how many prefixes one add or del may carry: Go's HTTP
// server parses at most 10000 query parameters, the list name among them.
// More belong in a list file.
const MaxGuardChange = 9999

// GuardChangeResult says what a guard add or del did.
type GuardChangeResult struct {
	List    string   `json:"list"`
	Changed []string `json:"changed"` // prefixes as stored
}

// EventGuardDrop is a sampled guard drop (Reason, Flow.In: the packet).
const EventGuardDrop = "guard_drop"

// guardRoutes are the guard endpoints when the backend has a guard.
func (s *Server) guardRoutes(routes map[string]route) {
	gb, ok := s.b.(GuardBackend)
	if !ok {
		return
	}
	routes["/v1/guard"] = route{http.MethodGet, func(w http.ResponseWriter, r *http.Request) {
		q := GuardQuery{Top: 20, Entries: true}
		if v := r.URL.Query().Get("top"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				s.writeError(w, http.StatusBadRequest, "top: want a whole number >= 0, got "+strconv.Quote(v))
				return
			}
			q.Top = n
		}
		if v := r.URL.Query().Get("entries"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				s.writeError(w, http.StatusBadRequest, "entries: want true or false, got "+strconv.Quote(v))
				return
			}
			q.Entries = b
		}
		g, err := gb.Guard(r.Context(), q)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.writeJSON(w, http.StatusOK, g)
	}}
	change := func(add bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			q, err := url.ParseQuery(r.URL.RawQuery)
			if err != nil { // Go takes at most MaxGuardChange+1 parameters
				s.writeError(w, http.StatusBadRequest, fmt.Sprintf("bad query (at most %d prefixes a request): %v", MaxGuardChange, err))
				return
			}
			res, err := gb.GuardChange(context.WithoutCancel(r.Context()), add, q.Get("list"), q["prefix"])
			var re *RequestError
			switch {
			case errors.As(err, &re):
				s.writeError(w, re.Code, re.Error())
				return
			case err != nil:
				s.fail(w, r, err)
				return
			}
			s.writeJSON(w, http.StatusOK, res)
		}
	}
	routes["/v1/guard/add"] = route{http.MethodPost, change(true)}
	routes["/v1/guard/del"] = route{http.MethodPost, change(false)}
}

// Guard returns the guard's counters, its lists (q.Entries) and up to
// q.Top dropped sources.
func (c *Client) Guard(ctx context.Context, q GuardQuery) (*Guard, error) {
	var g Guard
	path := "/v1/guard?top=" + strconv.Itoa(q.Top) + "&entries=" + strconv.FormatBool(q.Entries)
	if err := c.get(ctx, path, &g); err != nil {
		return nil, err
	}
	return &g, nil
}

// GuardChange adds or removes prefixes of a guard list ("allow", "deny").
func (c *Client) GuardChange(ctx context.Context, add bool, list string, prefixes []string) (*GuardChangeResult, error) {
	if len(prefixes) > MaxGuardChange {
		return nil, fmt.Errorf("%d prefixes: one change takes at most %d; put more in a list file (guard.%s_files)", len(prefixes), MaxGuardChange, list)
	}
	q := url.Values{"list": {list}, "prefix": prefixes}
	path := "/v1/guard/del?"
	if add {
		path = "/v1/guard/add?"
	}
	var res GuardChangeResult
	if err := c.call(ctx, http.MethodPost, path+q.Encode(), &res); err != nil {
		return nil, err
	}
	return &res, nil
}
