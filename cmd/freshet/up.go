package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"time"

	"github.com/freshetdb/freshet/internal/admin"
	"github.com/freshetdb/freshet/internal/embedded"
)

// upFlags parses `freshet up`'s flags; every flag defaults to its
// FRESHET_* environment variable.
func upFlags(args []string, stderr io.Writer) (embedded.Config, string, error) {
	var c embedded.Config
	var metrics string
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Origin, "origin", os.Getenv("FRESHET_ORIGIN"), "origin PostgreSQL URL; the role needs REPLICATION, and superuser to create the publication [FRESHET_ORIGIN]")
	fs.StringVar(&c.Listen, "listen", envOr("FRESHET_LISTEN", "127.0.0.1:6432"), "address for PostgreSQL clients: host:port, or a Unix socket path such as /run/freshet/.s.PGSQL.6432 (clients: host=/run/freshet port=6432) [FRESHET_LISTEN]")
	fs.StringVar(&c.Slot, "slot", envOr("FRESHET_SLOT", "freshet"), "logical replication slot, created if missing [FRESHET_SLOT]")
	fs.StringVar(&c.Publication, "publication", envOr("FRESHET_PUBLICATION", "freshet"), "publication, created FOR ALL TABLES if missing [FRESHET_PUBLICATION]")
	fs.Int64Var(&c.CacheBytes, "cache-bytes", envInt("FRESHET_CACHE_BYTES", 256<<20), "cache memory budget, bytes [FRESHET_CACHE_BYTES]")
	fs.DurationVar(&c.StalenessBound, "staleness-bound", envDuration("FRESHET_STALENESS_BOUND", 5*time.Second), "past this replication lag, reads go to the origin [FRESHET_STALENESS_BOUND]")
	fs.DurationVar(&c.Heartbeat, "heartbeat", envDuration("FRESHET_HEARTBEAT", 50*time.Millisecond), "WAL heartbeat, keeps the watermark fresh on an idle origin [FRESHET_HEARTBEAT]")
	fs.BoolVar(&c.DDLTrigger, "ddl-trigger", envBoolOr("FRESHET_DDL_TRIGGER", true), "create (when missing, as a superuser) the event trigger that marks DDL, GRANT and REVOKE in the change stream, and reload the catalog at each; false: notice them at the periodic catalog reload [FRESHET_DDL_TRIGGER]")
	fs.StringVar(&c.RefreshURL, "refresh-url", os.Getenv("FRESHET_REFRESH_URL"), "login that re-executes hot invalidated reads (a member of the client roles); empty: no refresh-ahead [FRESHET_REFRESH_URL]")
	fs.StringVar(&metrics, "metrics", os.Getenv("FRESHET_METRICS"), "address to serve /metrics, /status and /ready (the readiness probe: 200 while serving clients, 503 while starting or draining) on; empty: none [FRESHET_METRICS]")
	checkClients := clientFlags(fs, &c.Clients)
	if err := fs.Parse(args); err != nil {
		return c, "", err
	}
	if err := checkClients(); err != nil {
		return c, "", err
	}
	if c.Origin == "" {
		return c, "", errors.New("--origin (or FRESHET_ORIGIN) is required")
	}
	return c, metrics, nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int64) int64 {
	if v, err := strconv.ParseInt(os.Getenv(name), 10, 64); err == nil {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envBool(name string) bool { return envBoolOr(name, false) }

// envBoolOr is the boolean in the environment variable name, or def
// when it is unset or not a boolean.
func envBoolOr(name string, def bool) bool {
	v, err := strconv.ParseBool(os.Getenv(name))
	if err != nil {
		return def
	}
	return v
}

// up runs `freshet up` until SIGINT or SIGTERM.
func up(args []string, stderr io.Writer) int {
	cfg, metricsAddr, err := upFlags(args, stderr)
	if err != nil {
		return fail(stderr, "up", err, 2)
	}
	p := newProcess("up", stderr)
	defer p.close()
	cfg.Logger, cfg.Registerer = p.log, p.reg
	node, err := embedded.New(cfg)
	if err != nil {
		return fail(stderr, "up", err, 2)
	}
	if err := p.serveAdmin(metricsAddr, admin.Endpoints{Status: func() any { return node.Status() }, Ready: node.Ready,
		Queries: func() any { return node.Queries() }}); err != nil {
		return fail(stderr, "up", err, 1)
	}
	if err := node.Run(p.ctx, nil); err != nil {
		return fail(stderr, "up", err, 1)
	}
	if m := node.Materializer(); m != nil {
		s := m.Stats()
		p.log.Info("stopped", "hits", s.Hits, "misses", s.Misses, "fills", s.Fills, "refused_fills", s.StaleFills,
			"changes", s.Changes, "invalidated", s.Invalidated, "bypassed", fmt.Sprint(s.Bypassed))
	}
	return 0
}
