package netwatch

import (
	"context"
	"log/slog"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// WatchRouteChanges calls changed after routes or nexthop objects changed
// (any table, IPv4 or IPv6), at most once per every, until ctx ends. It
// subscribes before it returns. (With net.ipv4.nexthop_compat_mode 0, a
// nexthop group that changes sends no route event, only a nexthop one.)
//
// It reads no route: the socket's receive buffer is the smallest the
// kernel allows and overruns are not reported (NETLINK_NO_ENOBUFS), so
// while routes pour in the kernel queues one or two messages and drops the
// rest instead of copying a million of them to us. A change is never
// missed: after it, either its message or an older one waits in the queue
// (a message is dropped only when the queue is not empty), and reading that
// one calls changed.
func WatchRouteChanges(ctx context.Context, log *slog.Logger, every time.Duration, changed func()) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, err := dialRoutes(0, unix.RTNLGRP_NEXTHOP) // the kernel rounds the buffer up to its minimum
	if err != nil {
		return err
	}
	if err := c.SetOption(netlink.NoENOBUFS, true); err != nil {
		c.Close()
		return err
	}
	context.AfterFunc(ctx, func() { c.Close() }) // the socket's one closer; ends a read in progress
	var quiet logLimit
	// A rate limit after each wakeup: what arrives meanwhile waits in the
	// queue (or makes the kernel drop it, the queue being non-empty).
	go Receive(ctx, c.Receive,
		func([]netlink.Message) bool { changed(); return sleep(ctx, every) },
		func(err error) bool { // assume a change
			if quiet.allow() {
				log.Warn("route change watch", "err", err)
			}
			changed()
			return sleep(ctx, every)
		})
	return nil
}
