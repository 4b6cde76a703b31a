// Package postgres talks to PostgreSQL. The origin*.go and auth*.go files
// are the origin side of freshet's wire front end (serve/pgwire): origin
// dialing, cancel forwarding and the relayed authentication.
package postgres

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/freshetdb/freshet/serve/pgwire"
)

// OriginConfig configures an Origin.
type OriginConfig struct {
	// Addr is the origin's host:port. Required.
	Addr string
	// TLS, when set, makes every origin connection start with an
	// SSLRequest the origin must accept. Nil means plain TCP.
	TLS *tls.Config
	// TLSOptional goes on in plaintext when the origin answers the
	// SSLRequest with 'N' (libpq's sslmode=prefer). A handshake that
	// fails still fails.
	TLSOptional bool
	// DialTimeout bounds one TCP dial. Default 5 s.
	DialTimeout time.Duration
	// BufferSize is the read buffer of an origin connection. Default 16 KiB.
	BufferSize int
	// MaxStartupMessage bounds one message the origin sends before
	// ReadyForQuery. Default 1 MiB.
	MaxStartupMessage int
	// Logger receives connection-level events; nil discards them.
	Logger *slog.Logger
}

// Origin opens origin backends for freshet's PostgreSQL front end, one per
// client session, relaying the origin's own authentication.
// It is safe for concurrent use.
type Origin struct {
	cfg    OriginConfig
	dialer net.Dialer
}

var _ pgwire.Connector = (*Origin)(nil)

// NewOrigin validates cfg and returns an Origin.
func NewOrigin(cfg OriginConfig) (*Origin, error) {
	if cfg.Addr == "" {
		return nil, errors.New("postgres: OriginConfig.Addr is required")
	}
	if _, _, err := net.SplitHostPort(cfg.Addr); err != nil {
		return nil, fmt.Errorf("postgres: OriginConfig.Addr: %w", err)
	}
	if cfg.DialTimeout < 0 || cfg.BufferSize < 0 || cfg.MaxStartupMessage < 0 {
		return nil, errors.New("postgres: negative value in OriginConfig")
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.BufferSize == 0 {
		cfg.BufferSize = 16 << 10
	}
	if cfg.MaxStartupMessage == 0 {
		cfg.MaxStartupMessage = 1 << 20
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Origin{cfg: cfg, dialer: net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}}, nil
}

// dial opens a connection to the origin, through TLS when configured.
func (o *Origin) dial(ctx context.Context) (net.Conn, error) {
	conn, err := o.dialer.DialContext(ctx, "tcp", o.cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial origin %s: %w", o.cfg.Addr, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if o.cfg.TLS == nil {
		return conn, nil
	}
	tlsConn, err := o.startTLS(ctx, conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return tlsConn, nil
}

// startTLS sends an SSLRequest and upgrades conn.
func (o *Origin) startTLS(ctx context.Context, conn net.Conn) (net.Conn, error) {
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
		defer func() { _ = conn.SetDeadline(time.Time{}) }()
	}
	if _, err := conn.Write([]byte{0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f}); err != nil {
		return nil, fmt.Errorf("origin SSLRequest: %w", err)
	}
	var b [1]byte
	if _, err := conn.Read(b[:]); err != nil {
		return nil, fmt.Errorf("origin SSLRequest: %w", err)
	}
	if b[0] == 'N' && o.cfg.TLSOptional {
		return conn, nil
	}
	if b[0] != 'S' {
		return nil, fmt.Errorf("origin %s refused TLS", o.cfg.Addr)
	}
	cfg := o.cfg.TLS.Clone()
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(o.cfg.Addr)
		cfg.ServerName = host
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("origin TLS handshake: %w", err)
	}
	return tc, nil
}

// Cancel sends a CancelRequest for key on a connection of its own.
func (o *Origin) Cancel(ctx context.Context, key pgwire.BackendKey) error {
	conn, err := o.dial(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	msg := make([]byte, 0, 12+len(key.SecretKey))
	msg = append(msg, 0, 0, 0, byte(12+len(key.SecretKey)), 0x04, 0xd2, 0x16, 0x2e)
	msg = append(msg, byte(key.ProcessID>>24), byte(key.ProcessID>>16), byte(key.ProcessID>>8), byte(key.ProcessID))
	msg = append(msg, key.SecretKey...)
	if _, err := conn.Write(msg); err != nil {
		return fmt.Errorf("origin CancelRequest: %w", err)
	}
	// The origin answers a cancel by closing: wait for that, so the
	// cancel has been read before we return.
	var b [1]byte
	_, _ = conn.Read(b[:])
	return nil
}
