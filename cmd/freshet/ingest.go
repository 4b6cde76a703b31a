package main

import (
	"errors"
	"flag"
	"io"
	"os"

	"github.com/freshetdb/freshet/internal/admin"
	"github.com/freshetdb/freshet/internal/ingestnode"
)

// ingestFlags parses `freshet ingest`'s flags; every flag defaults to its
// FRESHET_* environment variable.
func ingestFlags(args []string, stderr io.Writer) (ingestnode.Config, string, error) {
	var c ingestnode.Config
	var kafkaList, tables, metrics string
	fs := flag.NewFlagSet("ingest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Source, "source", os.Getenv("FRESHET_SOURCE"), "origin PostgreSQL URL; the role needs REPLICATION, and superuser to create the publication [FRESHET_SOURCE]")
	fs.StringVar(&kafkaList, "kafka", os.Getenv("FRESHET_KAFKA"), "Kafka bootstrap brokers, host:port,... [FRESHET_KAFKA]")
	fs.StringVar(&c.Topic, "topic", os.Getenv("FRESHET_TOPIC"), `the source's topic, created if missing; default "freshet." + slot [FRESHET_TOPIC]`)
	fs.IntVar(&c.Partitions, "partitions", int(envInt("FRESHET_PARTITIONS", 3)), "partitions of a topic created here; each adds a produce request and a fetch per write [FRESHET_PARTITIONS]")
	fs.IntVar(&c.ReplicationFactor, "replication-factor", int(envInt("FRESHET_REPLICATION_FACTOR", 1)), "replication factor of a topic created here [FRESHET_REPLICATION_FACTOR]")
	fs.StringVar(&c.Slot, "slot", envOr("FRESHET_SLOT", "freshet"), "logical replication slot, created if missing [FRESHET_SLOT]")
	fs.StringVar(&c.Publication, "publication", envOr("FRESHET_PUBLICATION", "freshet"), "publication, created if missing [FRESHET_PUBLICATION]")
	fs.StringVar(&tables, "tables", os.Getenv("FRESHET_TABLES"), "schema.table,... for a publication created here; empty: FOR ALL TABLES [FRESHET_TABLES]")
	fs.BoolVar(&c.DDLTrigger, "ddl-trigger", envBoolOr("FRESHET_DDL_TRIGGER", true), "create (when missing, as a superuser) the event trigger that marks DDL, GRANT and REVOKE in the change stream, and reload the catalog at each; false: notice them at the periodic catalog reload [FRESHET_DDL_TRIGGER]")
	fs.DurationVar(&c.Heartbeat, "heartbeat", envDuration("FRESHET_HEARTBEAT", 0), "WAL heartbeat interval, keeps regions' watermarks fresh on an idle origin; default 50ms [FRESHET_HEARTBEAT]")
	fs.StringVar(&metrics, "metrics", os.Getenv("FRESHET_METRICS"), "address to serve /metrics and /status on; empty: none [FRESHET_METRICS]")
	buildKafkaSecurity := kafkaFlags(fs, &c.KafkaSecurity)
	if err := fs.Parse(args); err != nil {
		return c, "", err
	}
	if err := buildKafkaSecurity(); err != nil {
		return c, "", err
	}
	c.Brokers, c.Tables = brokers(kafkaList), brokers(tables)
	switch {
	case c.Source == "":
		return c, "", errors.New("--source (or FRESHET_SOURCE) is required")
	case len(c.Brokers) == 0:
		return c, "", errors.New("--kafka (or FRESHET_KAFKA) is required")
	}
	return c, metrics, nil
}

// ingest runs `freshet ingest` until SIGINT or SIGTERM.
func ingest(args []string, stderr io.Writer) int {
	cfg, metricsAddr, err := ingestFlags(args, stderr)
	if err != nil {
		return fail(stderr, "ingest", err, 2)
	}
	p := newProcess("ingest", stderr)
	defer p.close()
	cfg.Logger, cfg.Registerer = p.log, p.reg
	node, err := ingestnode.New(cfg)
	if err != nil {
		return fail(stderr, "ingest", err, 2)
	}
	if err := p.serveAdmin(metricsAddr, admin.Endpoints{Status: func() any { return node.Status() }}); err != nil {
		return fail(stderr, "ingest", err, 1)
	}
	if err := node.Run(p.ctx); err != nil {
		return fail(stderr, "ingest", err, 1)
	}
	return 0
}
