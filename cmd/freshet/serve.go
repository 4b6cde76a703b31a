package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/freshetdb/freshet/internal/admin"
	"github.com/freshetdb/freshet/internal/region"
)

// serveFlags parses `freshet serve`'s flags; every flag defaults to its
// FRESHET_* environment variable.
func serveFlags(args []string, stderr io.Writer) (region.Config, string, error) {
	var c region.Config
	var kafkaList, metrics, slot, dbzTopics string
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Region, "region", os.Getenv("FRESHET_REGION"), "this node's region name; its Kafka offsets are stored under it [FRESHET_REGION]")
	fs.StringVar(&kafkaList, "kafka", os.Getenv("FRESHET_KAFKA"), "Kafka bootstrap brokers, host:port,... [FRESHET_KAFKA]")
	fs.StringVar(&c.Origin, "origin", os.Getenv("FRESHET_ORIGIN"), "origin PostgreSQL URL: misses, writes and transactions go there [FRESHET_ORIGIN]")
	fs.StringVar(&c.Listen, "listen", envOr("FRESHET_LISTEN", "127.0.0.1:6432"), "address for PostgreSQL clients: host:port, or a Unix socket path such as /run/freshet/.s.PGSQL.6432 (clients: host=/run/freshet port=6432) [FRESHET_LISTEN]")
	fs.StringVar(&c.Topic, "topic", os.Getenv("FRESHET_TOPIC"), `the source's topic; default "freshet." + --slot, as freshet ingest [FRESHET_TOPIC]`)
	fs.StringVar(&slot, "slot", envOr("FRESHET_SLOT", "freshet"), "the ingest's slot, naming the default topic [FRESHET_SLOT]")
	fs.StringVar(&c.Publication, "publication", envOr("FRESHET_PUBLICATION", "freshet"), "the ingest's publication: reads of its tables are cached [FRESHET_PUBLICATION]")
	fs.DurationVar(&c.StalenessBound, "staleness-bound", envDuration("FRESHET_STALENESS_BOUND", 5*time.Second), "past this lag behind the origin, reads go to the origin [FRESHET_STALENESS_BOUND]")
	fs.Int64Var(&c.CacheBytes, "cache-bytes", envInt("FRESHET_CACHE_BYTES", 256<<20), "cache memory budget, bytes [FRESHET_CACHE_BYTES]")
	fs.StringVar(&c.RefreshURL, "refresh-url", os.Getenv("FRESHET_REFRESH_URL"), "login that re-executes hot invalidated reads (a member of the client roles); empty: no refresh-ahead [FRESHET_REFRESH_URL]")
	fs.StringVar(&dbzTopics, "debezium-topics", os.Getenv("FRESHET_DEBEZIUM_TOPICS"), "Debezium table topics (prefix.schema.table,...) to read instead of --topic; such a region has no staleness bound and tunnels every read unless --debezium-assume-lag [FRESHET_DEBEZIUM_TOPICS]")
	fs.DurationVar(&c.DebeziumAssumeLag, "debezium-assume-lag", envDuration("FRESHET_DEBEZIUM_ASSUME_LAG", 0), "with --debezium-topics: serve cached reads while every partition is read to its end and the newest change committed within this long; an estimate, NOT a bound (Kafka Connect may hold changes). Replaces --staleness-bound; 0: off [FRESHET_DEBEZIUM_ASSUME_LAG]")
	fs.BoolVar(&c.DebeziumFromBeginning, "debezium-from-beginning", envBool("FRESHET_DEBEZIUM_FROM_BEGINNING"), "with --debezium-topics: a region with no stored offsets reads the topics from their start, not their end [FRESHET_DEBEZIUM_FROM_BEGINNING]")
	fs.StringVar(&metrics, "metrics", os.Getenv("FRESHET_METRICS"), "address to serve /metrics, /status and /ready (the readiness probe: 200 while serving clients, 503 while starting or draining) on; empty: none [FRESHET_METRICS]")
	checkClients := clientFlags(fs, &c.Clients)
	buildKafkaSecurity := kafkaFlags(fs, &c.KafkaSecurity)
	if err := fs.Parse(args); err != nil {
		return c, "", err
	}
	if err := checkClients(); err != nil {
		return c, "", err
	}
	if err := buildKafkaSecurity(); err != nil {
		return c, "", err
	}
	c.Brokers = brokers(kafkaList)
	c.DebeziumTopics = brokers(dbzTopics) // the same comma-separated list
	if c.Topic == "" && len(c.DebeziumTopics) == 0 {
		c.Topic = "freshet." + slot
	}
	switch {
	case len(c.DebeziumTopics) > 0 && c.Topic != "":
		return c, "", errors.New("--topic and --debezium-topics exclude each other")
	case c.DebeziumAssumeLag < 0:
		return c, "", errors.New("--debezium-assume-lag must not be negative")
	case c.DebeziumAssumeLag > 0 && len(c.DebeziumTopics) == 0:
		return c, "", errors.New("--debezium-assume-lag needs --debezium-topics")
	case c.Region == "":
		return c, "", errors.New("--region (or FRESHET_REGION) is required")
	case len(c.Brokers) == 0:
		return c, "", errors.New("--kafka (or FRESHET_KAFKA) is required")
	case c.Origin == "":
		return c, "", errors.New("--origin (or FRESHET_ORIGIN) is required")
	}
	return c, metrics, nil
}

// serve runs `freshet serve --region NAME` until SIGINT or SIGTERM.
func serve(args []string, stderr io.Writer) int {
	cfg, metricsAddr, err := serveFlags(args, stderr)
	if err != nil {
		return fail(stderr, "serve", err, 2)
	}
	p := newProcess("serve", stderr)
	defer p.close()
	cfg.Logger, cfg.Registerer = p.log, p.reg
	node, err := region.New(cfg)
	if err != nil {
		return fail(stderr, "serve", err, 2)
	}
	if err := p.serveAdmin(metricsAddr, admin.Endpoints{Status: func() any { return node.Status() }, Ready: node.Ready,
		Queries: func() any { return node.Queries() }}); err != nil {
		return fail(stderr, "serve", err, 1)
	}
	if err := node.Run(p.ctx, nil); err != nil {
		return fail(stderr, "serve", err, 1)
	}
	if m := node.Materializer(); m != nil {
		s := m.Stats()
		p.log.Info("stopped", "hits", s.Hits, "misses", s.Misses, "changes", s.Changes, "invalidated", s.Invalidated,
			"bypassed", fmt.Sprint(s.Bypassed))
	}
	return 0
}
