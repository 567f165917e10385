package enforce

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/clawguard/clawguard/profiles"
)

// publish forwards each published port from its loopback host address to the
// sandbox, in user space: no DNAT to loopback and no route_localnet, so the
// port is reachable from this host only. All ports are bound before it
// returns (a busy port fails the start); connections are served until the
// gate stops. With a socket store, a port kept there by an earlier daemon is
// taken back rather than bound again, and every port is kept there.
func (g *gate) publish(sandboxName string, specs []string, sandbox netip.Addr, store SocketStore, log *slog.Logger) error {
	var lns []net.Listener
	for _, s := range specs {
		p, err := profiles.ParsePublish(s)
		if err != nil {
			closeAll(lns)
			return err
		}
		ln, err := listenPublished(sandboxName, p, store)
		if err != nil {
			closeAll(lns)
			return fmt.Errorf("publish %s: %w", s, err)
		}
		lns = append(lns, ln)
		target := net.JoinHostPort(sandbox.String(), strconv.Itoa(p.ContainerPort))
		g.background(func(ctx context.Context) { forward(ctx, ln, target, log) })
	}
	return nil
}

// publishSocketName names a published port's socket in the store: the
// sandbox, the host address and port (no ':', which the store's names may
// not hold).
func publishSocketName(sandbox string, p profiles.Publish) string {
	return strings.ReplaceAll(fmt.Sprintf("publish-%s-%s-%d", sandbox, p.HostIP, p.HostPort), ":", "_")
}

func listenPublished(sandbox string, p profiles.Publish, store SocketStore) (net.Listener, error) {
	addr := net.JoinHostPort(p.HostIP.String(), strconv.Itoa(p.HostPort))
	name := publishSocketName(sandbox, p)
	if store != nil {
		if f := store.Take(name); f != nil {
			ln, err := net.FileListener(f)
			f.Close()
			if err == nil && sameAddr(ln.Addr(), p) {
				return ln, keep(store, name, ln)
			}
			if ln != nil {
				ln.Close()
			}
			// Not this port after all: the store must let go of it too,
			// or it stays bound and the listen below fails.
			store.Drop(name)
		}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if store != nil {
		if err := keep(store, name, ln); err != nil {
			ln.Close()
			return nil, err
		}
	}
	return ln, nil
}

// sameAddr: the listener is on the published host address and port (an
// IPv4-mapped address in the profile is the IPv4 one the kernel reports).
func sameAddr(a net.Addr, p profiles.Publish) bool {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return false
	}
	ap := ta.AddrPort()
	return ap.Addr().Unmap() == p.HostIP.Unmap() && int(ap.Port()) == p.HostPort
}

func keep(store SocketStore, name string, ln net.Listener) error {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return fmt.Errorf("keep %s: not a TCP listener", name)
	}
	f, err := tl.File()
	if err != nil {
		return fmt.Errorf("keep %s: %w", name, err)
	}
	defer f.Close()
	return store.Keep(name, f)
}

func closeAll[C io.Closer](cs []C) {
	for _, c := range cs {
		c.Close()
	}
}

// forward accepts on ln and pipes each connection to target until ctx ends.
func forward(ctx context.Context, ln net.Listener, target string, log *slog.Logger) {
	var wg sync.WaitGroup
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			up, err := (&net.Dialer{Timeout: 5 * time.Second}).DialContext(ctx, "tcp", target)
			if err != nil {
				log.Debug("published port: sandbox unreachable", "target", target, "error", err)
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			pipe := func(dst, src net.Conn) {
				_, _ = io.Copy(dst, src)
				if tc, ok := dst.(*net.TCPConn); ok {
					_ = tc.CloseWrite()
				}
				done <- struct{}{}
			}
			go pipe(up, c)
			go pipe(c, up)
			select {
			case <-done:
				<-done
			case <-ctx.Done():
			}
		}()
	}
	wg.Wait()
}
