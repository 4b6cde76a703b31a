package pgwire

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"syscall"
)

// tlsHandshakeRecord is the first byte of a TLS ClientHello. A startup
// packet's first byte is the top byte of its length, 0 for any packet
// PostgreSQL accepts, so the two cannot be confused.
const tlsHandshakeRecord = 0x16

// alpnPostgreSQL is the ALPN protocol PostgreSQL 17 requires of a client
// that starts TLS directly (sslnegotiation=direct) and offers with an
// SSLRequest.
const alpnPostgreSQL = "postgresql"

// serverTLS is cfg with the "postgresql" ALPN protocol offered, or nil.
func serverTLS(cfg *tls.Config) *tls.Config {
	if cfg == nil || slices.Contains(cfg.NextProtos, alpnPostgreSQL) {
		return cfg
	}
	c := cfg.Clone()
	c.NextProtos = append(c.NextProtos, alpnPostgreSQL)
	return c
}

// directTLS runs the TLS handshake of a client that started it without
// an SSLRequest (libpq 17's sslnegotiation=direct), first being the byte
// already read. As PostgreSQL does, it wants the "postgresql" ALPN
// protocol, so that a TLS client of another protocol sent to the port is
// not taken for a PostgreSQL client.
func (s *Server) directTLS(ctx context.Context, raw net.Conn, first byte) (*tls.Conn, error) {
	if s.tls == nil {
		return nil, fatalf(CodeProtocolViolation, nil, "direct TLS connection, but TLS is not configured")
	}
	tc := tls.Server(&replayConn{Conn: raw, first: []byte{first}}, s.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("direct tls handshake: %w", err)
	}
	if tc.ConnectionState().NegotiatedProtocol != alpnPostgreSQL {
		err := fatalf(CodeProtocolViolation, nil, "received direct SSL connection request without ALPN protocol negotiation extension")
		_, _ = tc.Write(encodeError(nil, err))
		return nil, err
	}
	return tc, nil
}

// replayConn reads first, then the connection: the byte negotiate read
// to tell a TLS ClientHello from a startup packet.
type replayConn struct {
	net.Conn
	first []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.first) > 0 {
		n := copy(p, c.first)
		c.first = c.first[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// SyscallConn is the connection's, so that a waiting session can still
// poll its client's socket (watchClient).
func (c *replayConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, fmt.Errorf("pgwire: %T has no file descriptor", c.Conn)
	}
	return sc.SyscallConn()
}
