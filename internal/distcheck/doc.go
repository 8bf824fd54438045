// Package distcheck holds no code: its tests keep the files under packaging/
// (the systemd unit) consistent with what the daemon and the docs expect,
// so they cannot drift silently.
package distcheck
