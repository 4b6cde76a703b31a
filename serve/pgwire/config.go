package pgwire

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/freshetdb/freshet/materialize"
	"github.com/prometheus/client_golang/prometheus"
)

// Config configures a Server. The zero value of every field but Connector
// is usable.
type Config struct {
	// Connector opens authenticated origin backends. Required.
	Connector Connector
	// Cache is offered every statement; nil means materialize.PassThrough.
	Cache materialize.Cache
	// Verifiers, when set, makes freshet authenticate clients itself,
	// with SCRAM-SHA-256 against the role's verifier looked up on the
	// origin, and open origin backends with the ClientKey recovered from
	// the client's proof. No password is stored either way. Roles without
	// a SCRAM verifier cannot log in in this mode.
	Verifiers VerifierLookup
	// Pool keeps backends for reuse after a reset; it needs Verifiers.
	Pool Pool
	// Mode is SessionMode (the default: a client keeps one backend while
	// connected) or TransactionMode (a client holds a backend only from
	// the first message of a request to the ReadyForQuery 'I' that ends
	// it; SET/RESET are replayed, opaque session state pins the client to
	// its backend). TransactionMode needs Verifiers and Pool.
	Mode Mode
	// TLS, when set, lets clients upgrade with SSLRequest. Without it an
	// SSLRequest is answered 'N'.
	TLS *tls.Config
	// RequireTLS refuses clients that did not upgrade to TLS (28000).
	RequireTLS bool
	// MaxMessageSize bounds one client message, header included. Larger
	// messages end the session with 54000. Default 64 MiB.
	MaxMessageSize int
	// MaxClientConns bounds concurrent client sessions; one more is told
	// 53300. Default 10000.
	MaxClientConns int
	// StartupTimeout bounds the startup and authentication phase.
	// Default 30 s.
	StartupTimeout time.Duration
	// IdleTimeout ends a session that sent nothing for this long while
	// nothing was outstanding (57P05, or 25P03 inside a transaction).
	// Zero disables it (the default).
	IdleTimeout time.Duration
	// StatementTimeout cancels, on the origin, a request whose
	// ReadyForQuery has not come this long after it was sent (the client
	// sees the origin's 57014). Zero disables it (the default).
	StatementTimeout time.Duration
	// BufferSize is the size of each read and write buffer of a session.
	// Default 16 KiB.
	BufferSize int
	// NoEventLoop keeps every session on the goroutine pumps. By default
	// plain sessions (TCP or Unix sockets on both sides, no cache, no
	// pooling, no IdleTimeout) are relayed by an epoll event loop on its
	// own thread, which costs about a third less CPU per transaction, and
	// cached sessions with such sockets have their runs of cache hits
	// answered there (Linux only; elsewhere the pumps relay everything).
	// See ADR 0005.
	NoEventLoop bool
	// PeerID names this front end among peers, front ends behind one TCP
	// load balancer (PgBouncer's peer_id): every BackendKeyData it sends
	// carries it, so a peer that receives a CancelRequest for one of its
	// sessions forwards the request here. 1..MaxPeerID; 0: no peers.
	PeerID int
	// Peers are the front ends' addresses (host:port of their client
	// listeners) by PeerID. This one's own may be listed; it is skipped.
	// Every peer must have the same list. Needs PeerID.
	Peers map[int]string
	// Logger receives connection-level events; nil discards them.
	Logger *slog.Logger
	// Registerer, when set, receives the front end's Prometheus metrics.
	Registerer prometheus.Registerer
}

// Mode is how clients share origin backends.
type Mode uint8

// Pooling modes.
const (
	SessionMode Mode = iota
	TransactionMode
)

// Defaults for Config.
const (
	DefaultMaxMessageSize = 64 << 20
	DefaultMaxClientConns = 10000
	DefaultStartupTimeout = 30 * time.Second
	DefaultBufferSize     = 16 << 10
)

func (c Config) withDefaults() (Config, error) {
	if c.Connector == nil {
		return c, errors.New("pgwire: Config.Connector is required")
	}
	if c.MaxMessageSize < 0 || c.MaxClientConns < 0 || c.StartupTimeout < 0 ||
		c.IdleTimeout < 0 || c.StatementTimeout < 0 || c.BufferSize < 0 {
		return c, errors.New("pgwire: negative limit in Config")
	}
	if c.Pool != nil && c.Verifiers == nil {
		return c, errors.New("pgwire: Config.Pool needs Config.Verifiers: a reused backend skips the origin's authentication")
	}
	if c.Mode == TransactionMode && (c.Pool == nil || c.Verifiers == nil) {
		return c, errors.New("pgwire: TransactionMode needs Config.Pool and Config.Verifiers")
	}
	if c.Mode > TransactionMode {
		return c, errors.New("pgwire: unknown Config.Mode")
	}
	if c.RequireTLS && c.TLS == nil {
		return c, errors.New("pgwire: RequireTLS needs Config.TLS")
	}
	if err := ValidatePeers(c.PeerID, c.Peers); err != nil {
		return c, fmt.Errorf("pgwire: %w", err)
	}
	if c.Cache == nil {
		c.Cache = materialize.PassThrough{}
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.MaxClientConns == 0 {
		c.MaxClientConns = DefaultMaxClientConns
	}
	if c.StartupTimeout == 0 {
		c.StartupTimeout = DefaultStartupTimeout
	}
	if c.BufferSize == 0 {
		c.BufferSize = DefaultBufferSize
	}
	if c.BufferSize < 64 {
		c.BufferSize = 64
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}
