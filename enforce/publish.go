package enforce

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/clawguard/clawguard/profiles"
)

// publish forwards each published port from its loopback host address to the
// sandbox, in user space: no DNAT to loopback and no route_localnet, so the
// port is reachable from this host only. All ports are bound before it
// returns (a busy port fails the start); connections are served until the
// gate stops.
func (g *gate) publish(specs []string, sandbox netip.Addr, log *slog.Logger) error {
	var lns []net.Listener
	for _, s := range specs {
		p, err := profiles.ParsePublish(s)
		if err != nil {
			closeAll(lns)
			return err
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(p.HostIP.String(), strconv.Itoa(p.HostPort)))
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

func closeAll(lns []net.Listener) {
	for _, ln := range lns {
		ln.Close()
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
