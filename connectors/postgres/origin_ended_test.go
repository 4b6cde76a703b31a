package postgres

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/freshetdb/freshet/serve/pgwire"
)

func TestEnded(t *testing.T) {
	for _, tc := range []struct {
		name string
		peer func(t *testing.T, origin net.Conn, oc *pgwire.OriginConn)
		sent string // what peer sent, if anything
		want bool
	}{
		{"idle", func(*testing.T, net.Conn, *pgwire.OriginConn) {}, "", false},
		{"terminated: a FATAL and the end", func(t *testing.T, origin net.Conn, _ *pgwire.OriginConn) {
			if _, err := origin.Write([]byte("E\x00\x00\x00\x05\x00")); err != nil {
				t.Fatal(err)
			}
			_ = origin.Close()
		}, "E\x00\x00\x00\x05\x00", true},
		{"closed", func(_ *testing.T, origin net.Conn, _ *pgwire.OriginConn) { _ = origin.Close() }, "", true},
		{"a message no idle backend sends", func(t *testing.T, origin net.Conn, _ *pgwire.OriginConn) {
			if _, err := origin.Write([]byte("N\x00\x00\x00\x05\x00")); err != nil {
				t.Fatal(err)
			}
		}, "N\x00\x00\x00\x05\x00", true},
		{"bytes already buffered", func(t *testing.T, origin net.Conn, oc *pgwire.OriginConn) {
			if _, err := origin.Write([]byte("S\x00\x00\x00\x05\x00")); err != nil {
				t.Fatal(err)
			}
			if _, err := oc.Reader.Peek(1); err != nil {
				t.Fatal(err)
			}
		}, "S\x00\x00\x00\x05\x00", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			oc, origin := tcpBackend(t)
			tc.peer(t, origin, oc)
			time.Sleep(20 * time.Millisecond) // loopback delivery
			if got := ended(oc); got != tc.want {
				t.Fatalf("ended = %v, want %v", got, tc.want)
			}
			// A peek consumes nothing: what the origin sent is still there.
			_ = oc.Conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			if b, _ := io.ReadAll(oc.Reader); !bytes.HasPrefix(b, []byte(tc.sent)) {
				t.Fatalf("read %q after the peek, want %q first", b, tc.sent)
			}
		})
	}
}

// tcpBackend is an OriginConn over loopback TCP, counted by a pool as
// pooled ones are, and the origin's end of it.
func tcpBackend(t testing.TB) (*pgwire.OriginConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	origin, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(); _ = origin.Close() })
	p, err := NewOriginPool(PoolConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	oc := &pgwire.OriginConn{Conn: c, Reader: bufio.NewReader(c)}
	p.track(oc)
	return oc, origin
}
