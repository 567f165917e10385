// Package namegate decides a sandbox's TLS connections by the server name
// in their ClientHello, and then gets out of the way: it never terminates
// TLS, it replays the ClientHello it read to the original destination and
// splices the two connections.
//
// This file reads the ClientHello. The parsing is crypto/tls's own: a
// server handshake is started on a connection that records what it reads
// and swallows what it would write, and is ended from GetConfigForClient,
// the first moment the ClientHello is known. So a ClientHello spread over
// many records or segments, or grown large with post-quantum key shares,
// is read exactly as a TLS server would read it.
package namegate

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"time"
)

// Why a ClientHello could not be judged by its name.
var (
	ErrNoName   = errors.New("no server name in the ClientHello")
	ErrECH      = errors.New("encrypted ClientHello: the real server name is hidden")
	ErrNotTLS   = errors.New("not a TLS ClientHello")
	ErrTooLarge = errors.New("ClientHello larger than the gate reads")
	ErrTimeout  = errors.New("no whole ClientHello in time")
	ErrBadName  = errors.New("the server name is not a host name (letters, digits, hyphens and dots)")
	errGotHello = errors.New("namegate: ClientHello read")
)

// encryptedHello are the extensions that hide the real server name: the
// encrypted_client_hello extension (0xfe0d), the numbers of its drafts
// (0xfe08-0xfe0c), and the older encrypted_server_name (0xffce).
var encryptedHello = []uint16{0xfe08, 0xfe09, 0xfe0a, 0xfe0b, 0xfe0c, 0xfe0d, 0xffce}

// MaxHello is the most the gate reads before it has a whole ClientHello:
// a ClientHello with post-quantum key shares is about 1.7 KB, and a TLS
// record at most 16 KB; more is not a client that wants to be judged.
const MaxHello = 16 << 10

// Hello is what the gate learned: the server name, canonical (lower case,
// no trailing dot), and every byte it read, to be replayed upstream.
type Hello struct {
	ServerName string
	Raw        []byte
	// Len is how many bytes of Raw are the ClientHello's records; the
	// rest is what the client sent after it.
	Len int
}

// ReadHello reads a ClientHello from c within timeout. On success Raw holds
// every byte read from c, the ClientHello and anything the client sent
// right after it; nothing has been written to c.
func ReadHello(c net.Conn, timeout time.Duration) (Hello, error) {
	rec := &recorder{Conn: c, max: MaxHello}
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return Hello{}, fmt.Errorf("read deadline: %w", err)
	}
	defer c.SetReadDeadline(time.Time{}) //nolint:errcheck // best effort: the splice sets its own

	var h Hello
	var judged error
	srv := tls.Server(rec, &tls.Config{
		GetConfigForClient: func(chi *tls.ClientHelloInfo) (*tls.Config, error) {
			switch {
			case slices.ContainsFunc(chi.Extensions, func(e uint16) bool { return slices.Contains(encryptedHello, e) }):
				judged = ErrECH
			case chi.ServerName == "":
				judged = ErrNoName
			case !hostName(chi.ServerName):
				// Anything else is a name no allowlist holds, and bytes
				// (escapes, Unicode that folds to ASCII) that must not
				// reach a terminal or be taken for another name.
				judged = ErrBadName
			default:
				h.ServerName = strings.TrimSuffix(strings.ToLower(chi.ServerName), ".")
			}
			return nil, errGotHello
		},
	})
	err := srv.Handshake()
	h.Raw = rec.read
	switch {
	case errors.Is(err, errGotHello) && judged != nil:
		return h, judged
	case errors.Is(err, errGotHello):
		n, msg, err := helloLen(h.Raw)
		if err != nil {
			return h, fmt.Errorf("%w: %v", ErrNotTLS, err)
		}
		h.Len = n
		// crypto/tls takes the first name of type host_name and skips
		// the others; a server that reads the list otherwise would serve
		// a name the gate never judged.
		if names, err := serverNames(msg); err != nil || names != 1 {
			return h, fmt.Errorf("%w: the server_name extension must hold exactly one name, of type host_name", ErrBadName)
		}
		return h, nil
	case rec.over:
		return h, ErrTooLarge
	case isTimeout(err):
		return h, ErrTimeout
	}
	return h, fmt.Errorf("%w: %v", ErrNotTLS, err)
}

// hostName reports whether s is written in the letters of DNS host names,
// ASCII only, at most 253 of them.
func hostName(s string) bool {
	if len(s) > 253 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '.':
		default:
			return false
		}
	}
	return true
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// recorder keeps what is read, up to max bytes, and writes nothing: the
// handshake's alerts are not for the client, which gets its answer from
// the real server or a reset.
type recorder struct {
	net.Conn
	read []byte
	max  int
	over bool
}

func (r *recorder) Read(p []byte) (int, error) {
	if len(r.read) >= r.max {
		r.over = true
		return 0, ErrTooLarge
	}
	if room := r.max - len(r.read); len(p) > room {
		p = p[:room]
	}
	n, err := r.Conn.Read(p)
	r.read = append(r.read, p[:n]...)
	return n, err
}

func (r *recorder) Write(p []byte) (int, error) { return len(p), nil }

// TLS record types and the handshake message the gate looks for in them.
const (
	recordChangeCipherSpec = 20
	recordHandshake        = 22
	handshakeServerHello   = 2
	// maxRecord is the largest record a peer may send: 2^14 bytes of
	// plaintext, plus what encryption adds.
	maxRecord = 16<<10 + 256
)

// helloRetryRandom is the Random of a ServerHello that is a
// HelloRetryRequest (RFC 8446, 4.1.3).
var helloRetryRandom = []byte{
	0xcf, 0x21, 0xad, 0x74, 0xe5, 0x9a, 0x61, 0x11, 0xbe, 0x1d, 0x8c, 0x02, 0x1e, 0x65, 0xb8, 0x91,
	0xc2, 0xa2, 0x11, 0x16, 0x7a, 0xbb, 0x8c, 0x5e, 0x07, 0x9e, 0x09, 0xe2, 0xc8, 0xa8, 0x33, 0x9c,
}

// readHeader reads a TLS record's header: its type, and the five bytes.
func readHeader(r io.Reader) (byte, []byte, error) {
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return 0, nil, err
	}
	if n := int(hdr[3])<<8 | int(hdr[4]); n > maxRecord {
		return 0, nil, fmt.Errorf("%w: a record of %d bytes", ErrNotTLS, n)
	}
	return hdr[0], hdr, nil
}

// readRecord reads one whole TLS record: its type, and its bytes.
func readRecord(r io.Reader) (byte, []byte, error) {
	typ, hdr, err := readHeader(r)
	if err != nil {
		return 0, nil, err
	}
	rec := make([]byte, 5+(int(hdr[3])<<8|int(hdr[4])))
	copy(rec, hdr)
	if _, err := io.ReadFull(r, rec[5:]); err != nil {
		return 0, nil, err
	}
	return typ, rec, nil
}

// helloRetry reports whether a record of the server's begins with a
// HelloRetryRequest: a ServerHello (type, length, version) whose Random is
// the one RFC 8446 sets aside for it.
func helloRetry(typ byte, rec []byte) bool {
	body := rec[5:]
	return typ == recordHandshake && len(body) >= 6+len(helloRetryRandom) && body[0] == handshakeServerHello &&
		bytes.Equal(body[6:6+len(helloRetryRandom)], helloRetryRandom)
}

// prefixed reads prefix before the connection's own bytes.
type prefixed struct {
	net.Conn
	prefix []byte
}

func (p *prefixed) Read(b []byte) (int, error) {
	if len(p.prefix) > 0 {
		n := copy(b, p.prefix)
		p.prefix = p.prefix[n:]
		return n, nil
	}
	return p.Conn.Read(b)
}

// helloLen is how many bytes of raw hold the records of the ClientHello it
// begins with, which crypto/tls has read whole, and the ClientHello
// message those records carry.
func helloLen(raw []byte) (int, []byte, error) {
	var msg []byte
	for off := 0; off+5 <= len(raw); {
		typ, n := raw[off], int(raw[off+3])<<8|int(raw[off+4])
		if typ != recordHandshake {
			return 0, nil, fmt.Errorf("a record of type %d within the ClientHello", typ)
		}
		if off+5+n > len(raw) {
			break
		}
		msg = append(msg, raw[off+5:off+5+n]...)
		off += 5 + n
		if len(msg) < 4 {
			continue
		}
		switch want := 4 + (int(msg[1])<<16 | int(msg[2])<<8 | int(msg[3])); {
		case len(msg) == want:
			return off, msg, nil
		case len(msg) > want:
			return 0, nil, errors.New("more handshake data in the ClientHello's last record")
		}
	}
	return 0, nil, errors.New("no whole ClientHello in what was read")
}

// serverNames counts the entries of the server_name extension of the
// ClientHello message msg, or fails if it holds one not of type host_name.
func serverNames(msg []byte) (int, error) {
	r := reader(msg)
	if _, ok := r.take(4 + 2 + 32); !ok { // handshake header, version, random
		return 0, errors.New("short")
	}
	for _, width := range []int{1, 2, 1} { // session id, cipher suites, compression
		if _, ok := r.vector(width); !ok {
			return 0, errors.New("short")
		}
	}
	exts, ok := r.vector(2)
	if !ok {
		return 0, errors.New("no extensions")
	}
	for len(exts) > 0 {
		typ, ok1 := exts.number(2)
		body, ok2 := exts.vector(2)
		if !ok1 || !ok2 {
			return 0, errors.New("a malformed extension")
		}
		if typ != 0 {
			continue
		}
		list, ok := body.vector(2)
		if !ok {
			return 0, errors.New("a malformed server_name")
		}
		count := 0
		for len(list) > 0 {
			kind, ok1 := list.number(1)
			_, ok2 := list.vector(2)
			if !ok1 || !ok2 {
				return 0, errors.New("a malformed server_name")
			}
			if kind != 0 {
				return 0, fmt.Errorf("a server name of type %d", kind)
			}
			count++
		}
		return count, nil
	}
	return 0, nil
}

// reader takes big-endian fields off the front of a byte string.
type reader []byte

func (r *reader) take(n int) ([]byte, bool) {
	if n < 0 || len(*r) < n {
		return nil, false
	}
	b := (*r)[:n]
	*r = (*r)[n:]
	return b, true
}

func (r *reader) number(width int) (int, bool) {
	b, ok := r.take(width)
	n := 0
	for _, c := range b {
		n = n<<8 | int(c)
	}
	return n, ok
}

// vector is a field preceded by its length, of width bytes.
func (r *reader) vector(width int) (reader, bool) {
	n, ok := r.number(width)
	if !ok {
		return nil, false
	}
	b, ok := r.take(n)
	return reader(b), ok
}
