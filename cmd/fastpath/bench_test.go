package main

import (
	"strings"
	"testing"
)

// The extern flags are checked before anything is built: each mistake is a
// usage error naming what is missing.
func TestBenchExternFlags(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--configs", "kernel,extern"}, "needs --extern-up"},
		{[]string{"--configs", "kernel", "--extern-up", "true"}, "not among the configurations"},
		{[]string{"--extern-down", "true"}, "need --extern-up"},
		{[]string{"--extern-up", "true", "--extern-label", strings.Repeat("x", 41)}, "at most 40"},
	} {
		code, out, errOut := run(t, append([]string{"bench", "--name", "bflags"}, tt.args...)...)
		if code != 2 || out != "" || !strings.Contains(errOut, tt.want) {
			t.Errorf("bench %v: exit %d, stdout %q, stderr %q; want usage error saying %q", tt.args, code, out, errOut, tt.want)
		}
	}
}
