package daemon

import (
	"context"
	"log/slog"
	"net"
	"os"

	"github.com/vishvananda/netlink"

	"github.com/fastpath-router/fastpath/internal/xdpfeat"
)

// watch merges link changes and XDP feature changes into one coalescing
// "something changed" signal; the reconciler rereads everything on it.
func watch(ctx context.Context, log *slog.Logger) (<-chan struct{}, error) {
	out := make(chan struct{}, 1)
	poke := func() {
		select {
		case out <- struct{}{}:
		default: // a sync is already pending: it will see this change too
		}
	}
	links := make(chan netlink.LinkUpdate, 64)
	err := netlink.LinkSubscribeWithOptions(links, ctx.Done(), netlink.LinkSubscribeOptions{
		ErrorCallback: func(err error) {
			if ctx.Err() == nil { // closing the socket at shutdown is no news
				log.Warn("link watch", "err", err)
				poke()
			}
		},
	})
	if err != nil {
		return nil, err
	}
	feats, err := xdpfeat.Watch(ctx)
	if err != nil {
		return nil, err
	}
	go func() {
		for links != nil || feats != nil {
			select {
			case _, ok := <-links:
				if !ok {
					links = nil
				}
			case _, ok := <-feats:
				if !ok {
					feats = nil // the periodic resync still covers feature changes
				}
			}
			poke()
		}
	}()
	return out, nil
}

// notifyReady tells systemd (Type=notify) that the daemon is serving.
func notifyReady(log *slog.Logger) {
	sock := os.Getenv("NOTIFY_SOCKET")
	if sock == "" {
		return
	}
	c, err := net.Dial("unixgram", sock)
	if err != nil {
		log.Warn("sd_notify", "err", err)
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte("READY=1")); err != nil {
		log.Warn("sd_notify", "err", err)
	}
}
