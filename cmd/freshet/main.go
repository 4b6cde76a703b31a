// Command freshet is the one binary: `freshet up` (everything in one
// process), `freshet ingest`, `freshet serve --region NAME`, and the admin
// commands. main stays thin: it parses the command line and hands over.
package main

import (
	"fmt"
	"io"
	"os"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	switch args[0] {
	case "version", "--version":
		fmt.Fprintln(stdout, "freshet", versionString())
		return 0
	case "help", "-h", "--help":
		usage(stdout)
		return 0
	case "up":
		return up(args[1:], stderr)
	case "ingest":
		return ingest(args[1:], stderr)
	case "serve":
		return serve(args[1:], stderr)
	}
	fmt.Fprintf(stderr, "freshet: unknown command %q\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: freshet <command> [flags]

commands:
  up         everything in one process: change capture from the origin,
             the cache, and a PostgreSQL endpoint (freshet up --origin postgres://...)
  ingest     one per origin: its change stream into a Kafka topic
             (freshet ingest --source postgres://... --kafka host:9092)
  serve      a regional node: the cache, fed from Kafka, and a PostgreSQL
             endpoint that tunnels the rest to the origin
             (freshet serve --region eu --kafka host:9092 --origin postgres://...);
             --debezium-topics pg.public.t1,... reads Debezium's table topics
             instead (no staleness bound: reads go to the origin unless
             --debezium-assume-lag D, an estimate)
  version    print the version
  help       print this help

Every flag also reads a FRESHET_* environment variable; see
freshet <command> -h. With --metrics ADDR a node serves Prometheus
/metrics and a JSON /status there.
`)
}
