package labd

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/fastpath-router/fastpath/internal/nsutil"
)

// dialTimeout bounds one connection to the address in the namespace.
const dialTimeout = 2 * time.Second

// Forward accepts TCP connections on l (in the caller's namespace) and
// connects each to addr in network namespace netns, copying both ways,
// until ctx ends; then it closes l and every connection and returns. The
// demo and tests use it so that a browser on the host reaches the
// dashboard a daemon serves on loopback inside the lab's router.
func Forward(ctx context.Context, l net.Listener, netns, addr string) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { l.Close() })
	defer stop()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			var up net.Conn
			// The socket is made while the thread is in netns, and
			// stays there.
			if err := nsutil.Do(netns, func() (err error) {
				up, err = net.DialTimeout("tcp", addr, dialTimeout)
				return err
			}); err != nil {
				return
			}
			defer up.Close()
			done := context.AfterFunc(ctx, func() { c.Close(); up.Close() })
			defer done()
			var cw sync.WaitGroup
			cw.Add(1)
			go func() {
				defer cw.Done()
				io.Copy(up, c)
				if tc, ok := up.(*net.TCPConn); ok {
					tc.CloseWrite()
				}
			}()
			io.Copy(c, up)
			c.Close()
			cw.Wait()
		}()
	}
}
