package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// On the journal each record carries its priority ("<4>" for a warning),
// so journalctl -p warning finds it; anywhere else the lines are plain.
func TestLoggerJournalPriority(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		for _, journal := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/journal=%v", format, journal), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "stderr")
				f, err := os.Create(path)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				var st unix.Stat_t
				if err := unix.Fstat(int(f.Fd()), &st); err != nil {
					t.Fatal(err)
				}
				stream := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
				if !journal {
					stream = fmt.Sprintf("%d:%d", st.Dev, st.Ino+1) // another file
				}
				t.Setenv("JOURNAL_STREAM", stream)
				lf := logFlags{level: "debug", format: format}
				log, err := lf.logger(f)
				if err != nil {
					t.Fatal(err)
				}
				log = log.With("interface", "r0").WithGroup("g")
				log.Debug("d")
				log.Info("i")
				log.Warn("w", "err", "line1\nline2")
				log.Error("e")
				b, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
				want := []string{"<7>", "<6>", "<4>", "<3>"}
				if len(lines) != len(want) {
					t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), b)
				}
				for i, l := range lines {
					has := strings.HasPrefix(l, want[i])
					if has != journal || strings.HasPrefix(strings.TrimPrefix(l, want[i]), "<") {
						t.Errorf("line %d %q: want prefix %s: %v", i, l, want[i], journal)
					}
					if !strings.Contains(l, "r0") {
						t.Errorf("line %d %q lost the logger's attributes", i, l)
					}
				}
			})
		}
	}
}
