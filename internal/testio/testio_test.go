package testio

import (
	"strings"
	"sync"
	"testing"
)

// TestSyncBuffer: writes from several goroutines all land, whole, while
// String is read (run with -race).
func TestSyncBuffer(t *testing.T) {
	var b SyncBuffer
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 100 {
				b.Write([]byte("ab"))
				_ = b.String()
			}
		})
	}
	wg.Wait()
	if s := b.String(); len(s) != 800 || strings.Count(s, "ab") != 400 {
		t.Errorf("got %d bytes, %d whole writes; want 800, 400", len(s), strings.Count(s, "ab"))
	}
}
