package front

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/serve/pgwire"
)

// Clients are the client-facing settings of a node's PostgreSQL endpoint.
// The zero value serves plain connections in session mode with
// pgwire's default limits.
type Clients struct {
	// TLSCert and TLSKey are PEM files: with both, clients may upgrade
	// to TLS (sslmode=require, verify-full). They are read again when
	// they change, for the handshakes after.
	TLSCert, TLSKey string
	// RequireTLS refuses clients that do not upgrade. Needs TLSCert.
	RequireTLS bool
	// MaxConns bounds concurrent client connections; 0: pgwire's default.
	MaxConns int
	// MaxMessageBytes bounds one client message; 0: pgwire's default.
	MaxMessageBytes int
	// IdleTimeout ends a client connection idle this long; 0: never.
	IdleTimeout time.Duration
	// StatementTimeout cancels, on the origin, a request unanswered this
	// long; 0: never.
	StatementTimeout time.Duration
	// AuthURL, when set, is the login of an auth user (like PgBouncer's
	// auth_user): freshet checks each client's SCRAM-SHA-256 proof
	// against the role's verifier on the origin, and keeps reset origin
	// connections for reuse. No password is stored.
	AuthURL string
	// TransactionPooling lends a client an origin connection only for a
	// transaction. Needs AuthURL.
	TransactionPooling bool
	// PoolSize bounds the origin connections that clients' sessions
	// hold or that wait idle for reuse (PgBouncer's max_db_connections).
	// A client that needs one more waits for one to come free, up to
	// PoolWaitTimeout. Needs AuthURL; 0: no bound.
	PoolSize int
	// PoolWaitTimeout bounds that wait; the client is then told 53300
	// and disconnected. 0: 2 min, PgBouncer's query_wait_timeout.
	PoolWaitTimeout time.Duration
	// PoolMaxLifetime closes a pooled origin connection open this long
	// when it is next released or found idle (PgBouncer's
	// server_lifetime). 0: no limit.
	PoolMaxLifetime time.Duration
	// ShutdownTimeout is how long a stopping node drains its clients:
	// it accepts no more and ends each session at its next transaction
	// boundary (an idle one at once) with 57P01, as PostgreSQL's fast
	// shutdown does, so a request in flight is answered and an open
	// transaction may finish. Sessions left at the end are closed (their
	// transactions roll back). 0: close every session at once.
	ShutdownTimeout time.Duration
	// PeerID and Peers make several nodes behind one TCP load balancer
	// peers (PgBouncer's peer_id and [peers]): a client's CancelRequest
	// that reaches a node other than the one holding its session is
	// forwarded there. Peers maps each node's PeerID (1..255) to the
	// host:port of its client listener, this node's own included or not,
	// and must be the same on every node. PeerID 0: no peers.
	PeerID int
	Peers  map[int]string
}

// ParsePeers reads a peer list, "1=host:port,2=host:port".
func ParsePeers(list string) (map[int]string, error) {
	peers := make(map[int]string)
	for _, item := range strings.Split(list, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		id, addr, ok := strings.Cut(item, "=")
		n, err := strconv.Atoi(strings.TrimSpace(id))
		if !ok || err != nil {
			return nil, fmt.Errorf("peer %q is not id=host:port", item)
		}
		if _, dup := peers[n]; dup {
			return nil, fmt.Errorf("peer id %d listed twice", n)
		}
		peers[n] = strings.TrimSpace(addr)
	}
	return peers, nil
}

// clientSide is what Clients add to a pgwire.Config, and what must be
// closed with the front end.
type clientSide struct {
	auth *postgres.AuthQuery
	pool *postgres.OriginPool
}

// Validate reports settings that cannot work together.
func (c Clients) Validate() error {
	switch {
	case (c.TLSCert == "") != (c.TLSKey == ""):
		return errors.New("a TLS certificate needs its key and a key its certificate (--tls-cert, --tls-key)")
	case c.RequireTLS && c.TLSCert == "":
		return errors.New("requiring TLS needs a certificate and key (--tls-cert, --tls-key)")
	case c.TransactionPooling && c.AuthURL == "":
		return errors.New("transaction pooling needs an auth user (--auth-url): an origin connection lent to another client must not skip the origin's authentication")
	case c.PoolSize > 0 && c.AuthURL == "":
		return errors.New("a pool size needs an auth user (--auth-url): without one each client's login is relayed on a connection of its own")
	case c.MaxConns < 0 || c.MaxMessageBytes < 0 || c.IdleTimeout < 0 || c.StatementTimeout < 0 || c.ShutdownTimeout < 0 ||
		c.PoolSize < 0 || c.PoolWaitTimeout < 0 || c.PoolMaxLifetime < 0:
		return errors.New("client limits and timeouts must not be negative")
	}
	if err := pgwire.ValidatePeers(c.PeerID, c.Peers); err != nil {
		return fmt.Errorf("--peer-id, --peers: %w", err)
	}
	return nil
}

// apply validates c and sets its fields of cfg; the pool of reused
// backends lends only those whose host still fits (hostFits).
func (c Clients) apply(cfg *pgwire.Config, hostFits func(host string) bool) (clientSide, error) {
	var side clientSide
	if err := c.Validate(); err != nil {
		return side, err
	}
	if c.TLSCert != "" {
		certs, err := loadCertFiles(c.TLSCert, c.TLSKey, cfg.Logger)
		if err != nil {
			return side, err
		}
		cfg.TLS = &tls.Config{GetCertificate: certs.GetCertificate, MinVersion: tls.VersionTLS12}
	}
	cfg.RequireTLS = c.RequireTLS
	cfg.MaxClientConns, cfg.MaxMessageSize = c.MaxConns, c.MaxMessageBytes
	cfg.IdleTimeout, cfg.StatementTimeout = c.IdleTimeout, c.StatementTimeout
	cfg.PeerID, cfg.Peers = c.PeerID, c.Peers
	if c.AuthURL == "" {
		return side, nil
	}
	var err error
	if side.auth, err = postgres.NewAuthQuery(postgres.AuthQueryConfig{URL: c.AuthURL}); err != nil {
		return side, err
	}
	pc := postgres.PoolConfig{HostFits: hostFits, MaxOpen: c.PoolSize, WaitTimeout: c.PoolWaitTimeout, MaxLifetime: c.PoolMaxLifetime}
	var metrics *poolMetrics
	if cfg.Registerer != nil {
		metrics = newPoolMetrics()
		pc.OnWait = metrics.waited
	}
	if side.pool, err = postgres.NewOriginPool(pc); err != nil {
		side.close()
		return clientSide{}, err
	}
	if metrics != nil {
		metrics.register(cfg.Registerer, side.pool)
	}
	cfg.Verifiers, cfg.Pool = side.auth, side.pool
	if c.TransactionPooling {
		cfg.Mode = pgwire.TransactionMode
	}
	return side, nil
}

func (s clientSide) close() {
	if s.pool != nil {
		s.pool.Close()
	}
	if s.auth != nil {
		s.auth.Close()
	}
}
