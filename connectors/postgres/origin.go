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
	// Fallbacks are the origin's further hosts (libpq's host=a,b), tried
	// in order when none before them can be reached or will do TLS as
	// asked. A session's cancel goes to the host it reached.
	Fallbacks []OriginHost
	// CheckHost, when set, is asked before a host is dialled whether it
	// may serve relayed sessions (libpq's target_session_attrs); hosts
	// it refuses are skipped. An answer older than CheckMaxAge (default
	// 1 s) is used once more while the host is checked again, so that a
	// failover goes unseen for about CheckMaxAge; one check may take
	// twice DialTimeout.
	CheckHost   HostCheck
	CheckMaxAge time.Duration
	// OnHostCheck, when set, is told each host check's outcome: "fits",
	// "not_preferred" or "refused" (the host's role, or why it could not
	// be asked). For metrics; it must not block.
	OnHostCheck func(host, outcome string)
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

// OriginHost is one more address of the origin, with its TLS settings
// (its own ServerName for verify-full).
type OriginHost struct {
	Addr        string
	TLS         *tls.Config
	TLSOptional bool
}

// hosts are the addresses to try, in order.
func (c *OriginConfig) hosts() []OriginHost {
	return append([]OriginHost{{Addr: c.Addr, TLS: c.TLS, TLSOptional: c.TLSOptional}}, c.Fallbacks...)
}

// Origin opens origin backends for freshet's PostgreSQL front end, one per
// client session, relaying the origin's own authentication.
// It is safe for concurrent use.
type Origin struct {
	cfg    OriginConfig
	hosts  []OriginHost // cfg's, in the order they are tried
	checks *hostChecks  // nil: every host may serve
	dialer net.Dialer
}

var _ pgwire.Connector = (*Origin)(nil)

// NewOrigin validates cfg and returns an Origin.
func NewOrigin(cfg OriginConfig) (*Origin, error) {
	if cfg.Addr == "" {
		return nil, errors.New("postgres: OriginConfig.Addr is required")
	}
	hosts := cfg.hosts()
	for _, h := range hosts {
		if _, _, err := net.SplitHostPort(h.Addr); err != nil {
			return nil, fmt.Errorf("postgres: OriginConfig: host %q: %w", h.Addr, err)
		}
	}
	if cfg.DialTimeout < 0 || cfg.BufferSize < 0 || cfg.MaxStartupMessage < 0 || cfg.CheckMaxAge < 0 {
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
	if cfg.CheckMaxAge == 0 {
		cfg.CheckMaxAge = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	o := &Origin{cfg: cfg, hosts: hosts, dialer: net.Dialer{Timeout: cfg.DialTimeout, KeepAlive: 30 * time.Second}}
	if cfg.CheckHost != nil {
		o.checks = newHostChecks(cfg.CheckHost, cfg.CheckMaxAge, 2*cfg.DialTimeout, cfg.Logger)
		o.checks.observe = cfg.OnHostCheck
	}
	return o, nil
}

// dial opens a connection to the first of the origin's hosts that may
// serve (CheckHost; with prefer-standby, a host not preferred only after
// every other) and can be reached (and does TLS as asked), and returns it
// with that host's address. When none could, and host checks were under
// way, it tries once more with their answers.
func (o *Origin) dial(ctx context.Context) (net.Conn, string, error) {
	since := o.checks.answered()
	conn, addr, errs := o.dialHosts(ctx)
	if conn == nil && ctx.Err() == nil && o.checks.awaitChecks(ctx, since) {
		conn, addr, errs = o.dialHosts(ctx)
	}
	if conn == nil {
		return nil, "", errors.Join(errs...)
	}
	return conn, addr, nil
}

func (o *Origin) dialHosts(ctx context.Context) (net.Conn, string, []error) {
	var errs []error
	for pass := range o.checks.passes() {
		for _, h := range o.hosts {
			if err := o.checks.admits(ctx, h.Addr, pass); err != nil {
				if pass == 0 {
					errs = append(errs, err)
				}
				continue
			}
			conn, err := o.dialHost(ctx, h)
			if err == nil {
				return conn, h.Addr, nil
			}
			errs = append(errs, err)
			if ctx.Err() != nil {
				return nil, "", errs
			}
		}
	}
	return nil, "", errs
}

// Fits reports whether a backend on host (BackendKey.Host) may still
// serve: false once host's check refuses it (after a failover, a demoted
// primary under target_session_attrs=read-write), so that a pool drops
// its backends there instead of lending them.
func (o *Origin) Fits(host string) bool {
	if o.checks == nil {
		return true // no target_session_attrs: every host serves
	}
	for _, h := range o.hosts {
		if h.Addr == host {
			return o.checks.fits(host)
		}
	}
	return true // not one of ours: nothing to check it against
}

// dialHost opens a connection to h, through TLS when configured.
func (o *Origin) dialHost(ctx context.Context, h OriginHost) (net.Conn, error) {
	conn, err := o.dialer.DialContext(ctx, "tcp", h.Addr)
	if err != nil {
		return nil, fmt.Errorf("dial origin %s: %w", h.Addr, err)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if h.TLS == nil {
		return conn, nil
	}
	tlsConn, err := startTLS(ctx, conn, h)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return tlsConn, nil
}

// startTLS sends an SSLRequest and upgrades conn to h's TLS.
func startTLS(ctx context.Context, conn net.Conn, h OriginHost) (net.Conn, error) {
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
	if b[0] == 'N' && h.TLSOptional {
		return conn, nil
	}
	if b[0] != 'S' {
		return nil, fmt.Errorf("origin %s refused TLS", h.Addr)
	}
	cfg := h.TLS.Clone()
	if cfg.ServerName == "" {
		host, _, _ := net.SplitHostPort(h.Addr)
		cfg.ServerName = host
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		return nil, fmt.Errorf("origin %s TLS handshake: %w", h.Addr, err)
	}
	return tc, nil
}

// hostOf is the host key's backend runs on.
func (o *Origin) hostOf(key pgwire.BackendKey) OriginHost {
	for _, h := range o.hosts {
		if h.Addr == key.Host {
			return h
		}
	}
	return o.hosts[0]
}

// Cancel sends a CancelRequest for key, on a connection of its own to the
// host its backend runs on.
func (o *Origin) Cancel(ctx context.Context, key pgwire.BackendKey) error {
	conn, err := o.dialHost(ctx, o.hostOf(key))
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
