package postgres

import (
	"errors"
	"log/slog"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Config configures the PostgreSQL change stream.
type Config struct {
	// URL connects to the origin database as a role with REPLICATION (a
	// superuser is not needed); replication=database is added for the
	// stream. Required.
	URL string
	// Name is the source's name in change events. Required.
	Name string
	// Slot is the logical replication slot (pgoutput). Required.
	Slot string
	// Publication is the publication to stream. Required.
	Publication string
	// Tables are the schema-qualified tables Setup puts in a publication it
	// creates; empty means FOR ALL TABLES (which needs a superuser).
	Tables []string
	// StatusInterval is how often a standby status update is sent, under
	// load as well as idle. Default 10s; PostgreSQL's wal_sender_timeout is
	// 60s by default.
	StatusInterval time.Duration
	// ReceiveTimeout is how long the stream may stay silent (no data, no
	// keepalive answering our status updates) before the connection is
	// declared dead. Default 45s.
	ReceiveTimeout time.Duration
	// HeartbeatInterval is how often pg_logical_emit_message writes a
	// heartbeat into the WAL, so an idle database keeps its slot moving.
	// Zero disables heartbeats.
	HeartbeatInterval time.Duration
	// LagWarnBytes logs a warning when the slot's lag (current WAL LSN minus
	// confirmed flush LSN) exceeds it. Zero disables the warning.
	LagWarnBytes int64
	// LagInterval is how often slot lag is measured. Default 30s.
	LagInterval time.Duration
	// LagBytes, when set, receives each slot lag measurement in bytes: a
	// prometheus.Gauge registered on the caller's registry fits.
	LagBytes interface{ Set(float64) }
	// DDLTrigger makes Setup create an event trigger (when missing) that
	// writes a message into the WAL at the end of every DDL command, GRANT
	// and REVOKE included, and makes the stream report each as a catalog
	// change at the command's commit position. Without it consumers see
	// such changes only when they reload the catalog.
	DDLTrigger bool
	// ProtoVersion forces a pgoutput protocol version (1 or 2). Zero picks
	// 2, with streaming of large in-progress transactions, on PostgreSQL
	// 14 and later, else 1.
	ProtoVersion int
	// Logger receives operational messages; nil discards them.
	Logger *slog.Logger
}

var identRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func (c *Config) validate() error {
	switch {
	case c.URL == "":
		return errors.New("postgres: Config.URL is required")
	case c.Name == "":
		return errors.New("postgres: Config.Name is required")
	case !identRE.MatchString(c.Slot):
		return errors.New("postgres: Config.Slot must be a lower-case identifier (a-z, 0-9, _)")
	case !identRE.MatchString(c.Publication):
		return errors.New("postgres: Config.Publication must be a lower-case identifier (a-z, 0-9, _)")
	case c.ProtoVersion < 0 || c.ProtoVersion > 2:
		return errors.New("postgres: Config.ProtoVersion must be 0, 1 or 2")
	}
	if _, err := url.Parse(c.URL); err != nil {
		return errors.New("postgres: Config.URL does not parse")
	}
	if c.StatusInterval <= 0 {
		c.StatusInterval = 10 * time.Second
	}
	if c.ReceiveTimeout <= 0 {
		c.ReceiveTimeout = 45 * time.Second
	}
	if c.LagInterval <= 0 {
		c.LagInterval = 30 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// replicationURL adds replication=database to the configured URL (or
// key=value connection string), leaving the rest exactly as given.
func (c *Config) replicationURL() string {
	if !strings.HasPrefix(c.URL, "postgres://") && !strings.HasPrefix(c.URL, "postgresql://") {
		return c.URL + " replication=database"
	}
	if strings.Contains(c.URL, "?") {
		return c.URL + "&replication=database"
	}
	return c.URL + "?replication=database"
}
