package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"
)

// maxResponse bounds what the client reads, against a confused peer; a
// flow table of millions of flows fits (each flow is some 300 bytes).
const maxResponse = 1 << 30

// Client talks to a daemon's API socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the daemon listening on socketPath. It
// does not connect until a call is made; calls are bounded by their ctx
// only (there is deliberately no http.Client.Timeout, which would cut an
// event stream).
func NewClient(socketPath string) *Client {
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socketPath)
		},
		DisableCompression: true,
		IdleConnTimeout:    30 * time.Second,
	}
	return &Client{socket: socketPath, http: &http.Client{Transport: tr}}
}

// Socket is the path the client dials.
func (c *Client) Socket() string { return c.socket }

// Status returns the daemon's status.
func (c *Client) Status(ctx context.Context) (*Status, error) {
	var s Status
	if err := c.get(ctx, "/v1/status", &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Stats returns the datapath counters.
func (c *Client) Stats(ctx context.Context) (*Stats, error) {
	var s Stats
	if err := c.get(ctx, "/v1/stats", &s); err != nil {
		return nil, err
	}
	return &s, nil
}

// Flows returns the flow cache of offload mode, one entry per direction of
// each offloaded connection, largest by bytes first.
func (c *Client) Flows(ctx context.Context) (*Flows, error) { return c.FlowsQuery(ctx, FlowQuery{}) }

// FlowsLimit returns at most limit flows (0: all), the largest by bytes;
// Total still counts them all.
func (c *Client) FlowsLimit(ctx context.Context, limit int) (*Flows, error) {
	return c.FlowsQuery(ctx, FlowQuery{Limit: limit})
}

// FlowsQuery returns the flows q selects; the daemon filters and limits
// while it reads its cache.
func (c *Client) FlowsQuery(ctx context.Context, q FlowQuery) (*Flows, error) {
	var f Flows
	path := "/v1/flows"
	if v := q.values(); len(v) > 0 {
		path += "?" + v.Encode()
	}
	if err := c.get(ctx, path, &f); err != nil {
		return nil, err
	}
	return &f, nil
}

// Reload asks the daemon to reread its config file and apply the
// difference. An invalid config changes nothing and comes back as a
// *ConfigError whose text is the daemon's message, one problem per line.
// A reload that failed in part returns both what it did and the error.
func (c *Client) Reload(ctx context.Context) (*ReloadResult, error) {
	var res ReloadResult
	err := c.call(ctx, http.MethodPost, "/v1/reload", &res)
	var de *daemonError
	switch {
	case errors.As(err, &de) && len(de.body.Actions) > 0:
		return &ReloadResult{Changed: true, Actions: de.body.Actions}, err
	case err != nil:
		return nil, err
	}
	return &res, nil
}

// maxEventLine bounds one event on the wire, against a confused peer.
const maxEventLine = 1 << 20

// Events streams the daemon's events to fn, in the order the daemon sent
// them, until ctx ends (it returns ctx's error), fn returns an error (it
// returns that error), or the daemon ends the stream (an error wrapping
// ErrStreamEnded). Only ctx bounds the stream: no timeout ends it.
func (c *Client) Events(ctx context.Context, fn func(Event) error) error {
	const path = "/v1/events"
	resp, err := c.send(ctx, http.MethodGet, path)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, maxEventLine)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(line, &e); err != nil {
			return fmt.Errorf("api %s: decode event: %w", path, err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return &streamEndedError{socket: c.socket, err: sc.Err()}
}

// call sends a request without a body and decodes the JSON of a 200
// answer into out.
func (c *Client) call(ctx context.Context, method, path string, out any) error {
	resp, err := c.send(ctx, method, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return fmt.Errorf("api %s: read response: %w", path, err)
	}
	if len(body) > maxResponse {
		return fmt.Errorf("api %s: the response is larger than %d MiB: ask for less (a --limit)", path, maxResponse>>20)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("api %s: decode response: %w", path, err)
	}
	return nil
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	return c.call(ctx, http.MethodGet, path, out)
}

// send sends a request without a body and returns the response if it is a
// 200; the caller closes its body. Other answers become errors.
func (c *Client) send(ctx context.Context, method, path string) (*http.Response, error) {
	// The host is a placeholder: the transport always dials the socket.
	req, err := http.NewRequestWithContext(ctx, method, "http://fastpath"+path, nil)
	if err != nil {
		return nil, fmt.Errorf("api request %s: %w", path, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, c.dialError(path, err)
	}
	if resp.StatusCode == http.StatusOK {
		return resp, nil
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return nil, fmt.Errorf("api %s: read response: %w", path, err)
	}
	var e errorBody
	if json.Unmarshal(body, &e) != nil || e.Error == "" {
		return nil, fmt.Errorf("daemon: api %s answered %s", path, resp.Status)
	}
	if resp.StatusCode == http.StatusUnprocessableEntity {
		return nil, &ConfigError{Err: errors.New(e.Error)}
	}
	return nil, &daemonError{code: resp.StatusCode, body: e}
}

// daemonError is an error the daemon answered, with its whole body.
type daemonError struct {
	code int
	body errorBody
}

func (e *daemonError) Error() string {
	return fmt.Sprintf("daemon: %s (HTTP %d)", e.body.Error, e.code)
}

// dialError turns the usual ways of not reaching a daemon into advice.
func (c *Client) dialError(path string, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return &unreachableError{socket: c.socket,
			hint: "is it running? (use --socket or -n NETNS for another daemon)", err: err}
	case errors.Is(err, os.ErrPermission):
		return &unreachableError{socket: c.socket,
			hint: "permission denied; the API socket is root-only", err: err}
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("fastpath daemon at %s did not answer in time: %w", c.socket, context.DeadlineExceeded)
	}
	return fmt.Errorf("api %s via %s: %w", path, c.socket, err)
}

// unreachableError reads as advice but keeps the cause for errors.Is.
type unreachableError struct {
	socket, hint string
	err          error
}

func (e *unreachableError) Error() string {
	return fmt.Sprintf("cannot reach fastpath daemon at %s: %s", e.socket, e.hint)
}

func (e *unreachableError) Unwrap() error { return e.err }
