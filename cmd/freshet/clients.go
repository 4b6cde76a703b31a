package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/freshetdb/freshet/internal/front"
)

// clientFlags defines the PostgreSQL endpoint's flags, shared by `freshet
// up` and `freshet serve`, on fs. The returned check, called after
// fs.Parse, validates what the flag package cannot.
func clientFlags(fs *flag.FlagSet, c *front.Clients) (check func() error) {
	fs.StringVar(&c.TLSCert, "tls-cert", os.Getenv("FRESHET_TLS_CERT"), "PEM certificate (chain) for clients' TLS; with --tls-key, clients may use sslmode=require or verify-full [FRESHET_TLS_CERT]")
	fs.StringVar(&c.TLSKey, "tls-key", os.Getenv("FRESHET_TLS_KEY"), "PEM private key of --tls-cert [FRESHET_TLS_KEY]")
	fs.BoolVar(&c.RequireTLS, "require-tls", envBool("FRESHET_REQUIRE_TLS"), "refuse clients that do not use TLS [FRESHET_REQUIRE_TLS]")
	fs.IntVar(&c.MaxConns, "max-client-conns", int(envInt("FRESHET_MAX_CLIENT_CONNS", 10000)), "concurrent client connections; one more is refused with 53300 [FRESHET_MAX_CLIENT_CONNS]")
	fs.IntVar(&c.MaxMessageBytes, "max-message-bytes", int(envInt("FRESHET_MAX_MESSAGE_BYTES", 64<<20)), "largest client message; a larger one ends the connection with 54000 [FRESHET_MAX_MESSAGE_BYTES]")
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", envDuration("FRESHET_IDLE_TIMEOUT", 0), "close client connections idle this long; 0: never [FRESHET_IDLE_TIMEOUT]")
	fs.DurationVar(&c.StatementTimeout, "statement-timeout", envDuration("FRESHET_STATEMENT_TIMEOUT", 0), "cancel, on the origin, a request unanswered this long; 0: never [FRESHET_STATEMENT_TIMEOUT]")
	fs.StringVar(&c.AuthURL, "auth-url", os.Getenv("FRESHET_AUTH_URL"), "login of an auth user that may read pg_authid (like PgBouncer's auth_user): freshet checks clients' SCRAM-SHA-256 passwords against the origin's verifiers and reuses origin connections; empty: each client's login is relayed to the origin [FRESHET_AUTH_URL]")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", envDuration("FRESHET_SHUTDOWN_TIMEOUT", 10*time.Second), "on SIGINT or SIGTERM, stop accepting clients, end each session at its next transaction boundary (57P01), and close those still in a transaction after this long; 0: close all at once [FRESHET_SHUTDOWN_TIMEOUT]")
	fs.IntVar(&c.PoolSize, "pool-size", int(envInt("FRESHET_POOL_SIZE", 0)), "most origin connections, lent to clients or idle, freshet opens for clients with --auth-url (PgBouncer's max_db_connections); a client that needs one more waits for one to come free; 0: no limit [FRESHET_POOL_SIZE]")
	fs.DurationVar(&c.PoolWaitTimeout, "pool-wait-timeout", envDuration("FRESHET_POOL_WAIT_TIMEOUT", 2*time.Minute), "how long a client waits for a pooled origin connection before it is refused with 53300 [FRESHET_POOL_WAIT_TIMEOUT]")
	fs.DurationVar(&c.PoolMaxLifetime, "pool-max-lifetime", envDuration("FRESHET_POOL_MAX_LIFETIME", time.Hour), "close a pooled origin connection open this long when it is next released or found idle (PgBouncer's server_lifetime); 0: no limit [FRESHET_POOL_MAX_LIFETIME]")
	fs.IntVar(&c.PeerID, "peer-id", int(envInt("FRESHET_PEER_ID", 0)), "this node's id (1..255) among nodes behind one TCP load balancer, carried in the cancel keys it gives clients (PgBouncer's peer_id); 0: no peers [FRESHET_PEER_ID]")
	peers := fs.String("peers", os.Getenv("FRESHET_PEERS"), "the nodes behind the same load balancer, id=host:port of each one's client listener, comma-separated and the same on every node; a CancelRequest for another node's session is forwarded to it (PgBouncer's [peers]) [FRESHET_PEERS]")
	mode := fs.String("pool-mode", envOr("FRESHET_POOL_MODE", "session"), "session: a client keeps one origin connection; transaction: a client holds one only during a transaction (needs --auth-url) [FRESHET_POOL_MODE]")
	return func() error {
		switch *mode {
		case "session":
		case "transaction":
			c.TransactionPooling = true
		default:
			return fmt.Errorf("--pool-mode is session or transaction, not %q", *mode)
		}
		if *peers != "" {
			var err error
			if c.Peers, err = front.ParsePeers(*peers); err != nil {
				return fmt.Errorf("--peers: %w", err)
			}
		}
		return c.Validate()
	}
}
