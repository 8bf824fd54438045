package main

import (
	"bytes"
	"testing"

	"github.com/fastpath-router/fastpath/internal/daemon"
)

func TestWriteDetach(t *testing.T) {
	for _, tt := range []struct {
		rep  daemon.DetachReport
		want string
	}{
		{daemon.DetachReport{}, "nothing to detach\n"},
		{daemon.DetachReport{Removed: []string{"link r0", "map fp_flows"}},
			"removed link r0\nremoved map fp_flows\n"},
	} {
		var b bytes.Buffer
		if err := writeDetach(&b, tt.rep); err != nil || b.String() != tt.want {
			t.Errorf("writeDetach(%+v) = %q, %v; want %q", tt.rep, b.String(), err, tt.want)
		}
	}
}
