package labd

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Interface is one interface entry of a daemon config.
type Interface struct {
	Name   string
	Mode   string // "route" (default) or "off"
	Attach string // "auto" (default), "xdp", "xdp-generic" or "tc"
}

// ConfigFile is the name WriteConfig gives the config in its directory.
const ConfigFile = "fastpath.yaml"

// ConfigYAML returns a daemon config (version 1) for ifaces, serving the API
// on socket. Names are written as they are: lab interface names need no
// quoting.
func ConfigYAML(socket string, ifaces ...Interface) string {
	var b strings.Builder
	b.WriteString("# written by fastpath for a lab daemon\nversion: 1\ninterfaces:\n")
	for _, ifc := range ifaces {
		mode, attach := ifc.Mode, ifc.Attach
		if mode == "" {
			mode = "route"
		}
		if attach == "" {
			attach = "auto"
		}
		fmt.Fprintf(&b, "  - {name: %s, mode: %s, attach: %s}\n", ifc.Name, mode, attach)
	}
	fmt.Fprintf(&b, "api:\n  socket: %s\n", socket)
	return b.String()
}

// WriteConfig writes ConfigYAML(socket, ifaces...) to dir/fastpath.yaml and
// returns the file's path.
func WriteConfig(dir, socket string, ifaces ...Interface) (string, error) {
	path := filepath.Join(dir, ConfigFile)
	if err := os.WriteFile(path, []byte(ConfigYAML(socket, ifaces...)), 0o644); err != nil {
		return "", fmt.Errorf("write daemon config: %w", err)
	}
	return path, nil
}
