package labd

import (
	"fmt"
	"sync"
)

// tailBuffer keeps the last max bytes written to it; safe for concurrent
// use (exec copies stdout and stderr from separate goroutines).
type tailBuffer struct {
	mu      sync.Mutex
	buf     []byte
	max     int
	dropped int64 // bytes discarded from the front
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf = append(b.buf, p...)
	if over := len(b.buf) - b.max; over > 0 {
		b.buf = append(b.buf[:0], b.buf[over:]...)
		b.dropped += int64(over)
	}
	return len(p), nil
}

// String returns the bytes kept, after a note if earlier ones were dropped.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 {
		return fmt.Sprintf("[%d earlier bytes dropped]\n%s", b.dropped, b.buf)
	}
	return string(b.buf)
}
