package api

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SocketEnv names the environment variable that gives client commands the
// daemon's socket when neither --socket nor --netns does.
const SocketEnv = "FASTPATH_SOCKET"

// netnsRunDir is where iproute2 keeps the names of network namespaces.
const netnsRunDir = "/run/netns"

// NetnsSocket is the socket a daemon serving the network namespace named
// name is expected to use (its config's api.socket), so that clients can
// find it by the namespace's name, as `ip -n NAME` does. A unix socket's
// path lives in the file system, not in the network namespace, so reaching
// it needs no setns: only a path per namespace.
func NetnsSocket(name string) string {
	return filepath.Join(filepath.Dir(DefaultSocket), "netns", name+".sock")
}

// SocketChoice is what a client command was told about the daemon's socket.
type SocketChoice struct {
	Socket    string // --socket
	SocketSet bool   // --socket was given (even empty)
	Netns     string // --netns
}

// Resolve returns the socket path: --socket, else --netns's socket, else
// $FASTPATH_SOCKET, else DefaultSocket. Contradictory or empty choices are
// errors that say what to give instead.
func (c SocketChoice) Resolve() (string, error) {
	switch {
	case c.SocketSet && c.Netns != "":
		return "", errors.New("--socket and --netns both name a daemon; give one of them")
	case c.SocketSet && c.Socket == "":
		return "", fmt.Errorf("empty --socket: give the daemon's API socket (its config's api.socket), or leave it out for %s", DefaultSocket)
	case c.SocketSet:
		return c.Socket, nil
	case c.Netns != "":
		if err := checkNetnsName(c.Netns); err != nil {
			return "", err
		}
		return NetnsSocket(c.Netns), nil
	}
	if s := os.Getenv(SocketEnv); s != "" {
		return s, nil
	}
	return DefaultSocket, nil
}

// checkNetnsName accepts the name of a namespace `ip netns` knows.
func checkNetnsName(name string) error {
	if name == "." || name == ".." || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("invalid network namespace name %q", name)
	}
	if _, err := os.Stat(filepath.Join(netnsRunDir, name)); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("network namespace %q does not exist (no %s; see ip netns list)", name, filepath.Join(netnsRunDir, name))
		}
		return fmt.Errorf("network namespace %q: %w", name, err)
	}
	return nil
}
