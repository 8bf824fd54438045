package api

import (
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

// maxResponse bounds what the client reads, against a confused peer.
const maxResponse = 16 << 20

// Client talks to a daemon's API socket.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the daemon listening on socketPath. It
// does not connect until a call is made; calls are bounded by their ctx.
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
// each offloaded connection, in no particular order.
func (c *Client) Flows(ctx context.Context) (*Flows, error) {
	var f Flows
	if err := c.get(ctx, "/v1/flows", &f); err != nil {
		return nil, err
	}
	return &f, nil
}

func (c *Client) get(ctx context.Context, path string, out any) error {
	// The host is a placeholder: the transport always dials the socket.
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://fastpath"+path, nil)
	if err != nil {
		return fmt.Errorf("api request %s: %w", path, err)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return c.dialError(path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse))
	if err != nil {
		return fmt.Errorf("api %s: read response: %w", path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e errorBody
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return fmt.Errorf("daemon: %s (HTTP %d)", e.Error, resp.StatusCode)
		}
		return fmt.Errorf("daemon: api %s answered %s", path, resp.Status)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("api %s: decode response: %w", path, err)
	}
	return nil
}

// dialError turns the usual ways of not reaching a daemon into advice.
func (c *Client) dialError(path string, err error) error {
	switch {
	case errors.Is(err, os.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
		return &unreachableError{socket: c.socket,
			hint: "is it running? (use --socket for another daemon)", err: err}
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
