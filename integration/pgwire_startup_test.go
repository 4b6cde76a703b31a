package integration

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/serve/pgwire"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgproto3"
)

func startupBytes(t *testing.T, user string) []byte {
	t.Helper()
	b, err := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": user, "database": "freshet_test"}}).Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dialRaw(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

var sslRequest = []byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}

// TestPgwireGSSENCRefused: a GSSENCRequest is answered 'N' and the client
// may go on with a plain StartupMessage.
func TestPgwireGSSENCRefused(t *testing.T) {
	p := startProxy(t, pgwire.Config{})
	c := dialRaw(t, p.addr)
	if _, err := c.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30}); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'N' {
		t.Fatalf("GSSENCRequest answered %q, %v; want 'N'", b[0], err)
	}
	if _, err := c.Write(startupBytes(t, "freshet_super")); err != nil {
		t.Fatal(err)
	}
	fe := pgproto3.NewFrontend(c, c)
	if _, ok := mustReceive(t, fe).(*pgproto3.AuthenticationSASL); !ok {
		t.Fatal("after GSSENC 'N' the startup did not reach the origin's authentication")
	}
}

// TestPgwireBytesBeforeTLSRefused sends a plaintext StartupMessage in the
// same write as the SSLRequest (the CVE-2021-23214 injection): freshet
// must not treat it as if it came through TLS.
func TestPgwireBytesBeforeTLSRefused(t *testing.T) {
	p := startProxy(t, pgwire.Config{TLS: newTestCA(t).server})
	c := dialRaw(t, p.addr)
	if _, err := c.Write(append(append([]byte{}, sslRequest...), startupBytes(t, "freshet_super")...)); err != nil {
		t.Fatal(err)
	}
	var b [1]byte
	if _, err := io.ReadFull(c, b[:]); err != nil || b[0] != 'S' {
		t.Fatalf("SSLRequest answered %q, %v", b[0], err)
	}
	rest, _ := io.ReadAll(c)
	// What may come back is a TLS alert record (0x15), never a protocol
	// message such as an authentication request ('R').
	if len(rest) > 0 && rest[0] != 0x15 {
		t.Fatalf("after injected plaintext freshet answered %q", rest)
	}
	// And a proper TLS client still works on a fresh connection.
	c2 := dialRaw(t, p.addr)
	if _, err := c2.Write(sslRequest); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(c2, b[:]); err != nil || b[0] != 'S' {
		t.Fatalf("SSLRequest answered %q, %v", b[0], err)
	}
	tc := tls.Client(c2, &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // checks the framing, not the certificate
	if err := tc.HandshakeContext(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Write(startupBytes(t, "freshet_super")); err != nil {
		t.Fatal(err)
	}
	if _, ok := mustReceive(t, pgproto3.NewFrontend(tc, tc)).(*pgproto3.AuthenticationSASL); !ok {
		t.Fatal("TLS startup did not reach authentication")
	}
}

// TestPgwireDirectTLSWithoutTLS: a client that starts TLS directly at a
// front end without TLS configured is closed, not read as a startup
// packet, and a plaintext client still gets in.
func TestPgwireDirectTLSWithoutTLS(t *testing.T) {
	p := startProxy(t, pgwire.Config{})
	tc := tls.Client(dialRaw(t, p.addr), &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"postgresql"}}) //nolint:gosec // no certificate is ever shown
	if err := tc.HandshakeContext(context.Background()); err == nil {
		t.Fatal("a TLS handshake succeeded without TLS configured")
	}
	c := dialRaw(t, p.addr)
	if _, err := c.Write(startupBytes(t, "freshet_super")); err != nil {
		t.Fatal(err)
	}
	if _, ok := mustReceive(t, pgproto3.NewFrontend(c, c)).(*pgproto3.AuthenticationSASL); !ok {
		t.Fatal("a plaintext startup did not reach the origin's authentication")
	}
}

// TestPgwireBadStartup: malformed startup packets get a clear FATAL and a
// closed connection.
func TestPgwireBadStartup(t *testing.T) {
	p := startProxy(t, pgwire.Config{})
	tests := []struct {
		name string
		raw  []byte
		code string // "" when the connection just closes
	}{
		{name: "protocol 2.0", raw: []byte{0, 0, 0, 8, 0, 2, 0, 0}, code: pgwire.CodeProtocolViolation},
		{name: "huge length", raw: []byte{0x7f, 0, 0, 0, 0, 3, 0, 0}},
		{name: "short length", raw: []byte{0, 0, 0, 2}},
		{name: "no user", raw: func() []byte {
			b, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"database": "x"}}).Encode(nil)
			return b
		}(), code: pgwire.CodeInvalidAuthorization},
		{name: "unterminated parameters", raw: append(binary.BigEndian.AppendUint32([]byte{0, 0, 0, 13}, pgproto3.ProtocolVersion30), 'u', 's', 'e', 'r', 0), code: pgwire.CodeProtocolViolation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dialRaw(t, p.addr)
			if _, err := c.Write(tt.raw); err != nil {
				t.Fatal(err)
			}
			got := readErrorCode(t, c)
			if got != tt.code {
				t.Fatalf("got SQLSTATE %q, want %q", got, tt.code)
			}
		})
	}
}

// readErrorCode reads until the connection closes and returns the SQLSTATE
// of the ErrorResponse it carried, if any.
func readErrorCode(t *testing.T, c net.Conn) string {
	t.Helper()
	fe := pgproto3.NewFrontend(c, c)
	code := ""
	for {
		msg, err := fe.Receive()
		if err != nil {
			return code
		}
		if e, ok := msg.(*pgproto3.ErrorResponse); ok {
			code = e.Code
		}
	}
}

// TestPgwireProtocol32 connects asking for protocol 3.2: the origin
// (PostgreSQL 15) or freshet negotiates down to 3.0 and the session works.
func TestPgwireProtocol32(t *testing.T) {
	relay := startProxy(t, pgwire.Config{})
	pooled, _ := startPooledProxy(t, pgwire.Config{})
	for name, p := range map[string]*proxy{"relay": relay, "verified": pooled} {
		t.Run(name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			conn, err := pgx.Connect(ctx, p.url(t, testenv.PostgresURL(t))+"&max_protocol_version=3.2")
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			var one int
			if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Fatalf("query: %v", err)
			}
		})
	}
}

// TestPgwireNoChannelBinding: freshet never advertises SCRAM-SHA-256-PLUS,
// so a client that requires channel binding is refused and one that
// prefers it logs in without.
func TestPgwireNoChannelBinding(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startProxy(t, pgwire.Config{TLS: newTestCA(t).server})
	base := withSSLMode(t, p.url(t, testenv.PostgresReplURL(t)), "require")
	if _, err := pgx.Connect(ctx, base+"&channel_binding=require"); err == nil {
		t.Fatal("channel_binding=require succeeded: PLUS was advertised")
	}
	conn, err := pgx.Connect(ctx, base+"&channel_binding=prefer")
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close(ctx)
}
