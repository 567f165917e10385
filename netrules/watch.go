package netrules

import (
	"context"
	"errors"
	"time"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// settle is how long a burst of rule changes (a firewall reload is
// hundreds of messages) is let run before the one check it leads to, and
// minGap the least time between two checks: every rule change on the host
// (Docker, kube-proxy, our own repairs) is announced, and a rule the kernel
// prints differently from how we write it must not become a tight loop.
const (
	settle = 5 * time.Millisecond
	minGap = 100 * time.Millisecond
)

// WatchRules calls check at once, soon after each change to the host's
// rules, and every poll in any case, until ctx ends. iptables-nft and nft
// announce every change on the NFNLGRP_NFTABLES netlink group, so a reload
// is seen within milliseconds; legacy iptables announces nothing, and then
// poll is the bound. Changes of our own are announced too: the check that
// follows them finds nothing to do.
func (h *Host) WatchRules(ctx context.Context, poll time.Duration, check func()) {
	changed := make(chan struct{}, 1)
	if s, err := nl.Subscribe(unix.NETLINK_NETFILTER, unix.NFNLGRP_NFTABLES); err == nil {
		// Closing it on return ends the reader below.
		defer s.Close()
		go func() {
			for {
				_, _, err := s.Receive()
				// ENOBUFS: announcements were lost, which is a change
				// all the same.
				if err != nil && !errors.Is(err, unix.ENOBUFS) && !errors.Is(err, unix.EAGAIN) {
					return // closed
				}
				select {
				case changed <- struct{}{}:
				default:
				}
			}
		}()
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		check()
		select {
		case <-ctx.Done():
			return
		case <-time.After(minGap):
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-changed:
			select {
			case <-time.After(settle):
			case <-ctx.Done():
				return
			}
			select {
			case <-changed:
			default:
			}
		}
	}
}
