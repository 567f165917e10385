package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"syscall"
	"time"

	"github.com/clawguard/clawguard/profiles"
)

// Client talks to the daemon's API on its unix socket; the host part of
// every URL is ignored.
type Client struct{ http *http.Client }

// ErrNoDaemon means no daemon answers on the socket.
var ErrNoDaemon = errors.New("no clawguard daemon is running")

// ErrNotFound is the API's 404: no such sandbox.
var ErrNotFound = errors.New("not found")

// Dial returns a client if a daemon answers on socket.
func Dial(socket string) (*Client, error) {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if errors.Is(err, syscall.EACCES) {
		return nil, fmt.Errorf("the clawguard daemon's socket %s: permission denied (run as root, or be in its socket_group)", socket)
	}
	if err != nil {
		return nil, fmt.Errorf("%w on %s (start it with `clawguard daemon` or `systemctl start clawguard`)", ErrNoDaemon, socket)
	}
	c.Close()
	return &Client{http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}, nil
}

// Do sends a request and decodes the answer into out (if not nil). API
// errors come back typed: profile errors keep their fields, a 404 wraps
// ErrNotFound.
func (c *Client) Do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://clawguard"+path, body)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("clawguard daemon: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e APIError
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			return fmt.Errorf("clawguard daemon: %s", resp.Status)
		}
		if len(e.Profile) > 0 {
			return &profiles.Error{Source: "(daemon)", Fields: e.Profile}
		}
		if resp.StatusCode == http.StatusNotFound {
			return fmt.Errorf("%s: %w", e.Error, ErrNotFound)
		}
		return errors.New(e.Error)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}
