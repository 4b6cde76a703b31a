package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/freshetdb/freshet/internal/admin"
)

// process is what every long-running command shares: a logger, a
// registry with the Go and process collectors, a context that ends on
// SIGINT or SIGTERM, and the admin endpoint once started.
type process struct {
	name  string
	log   *slog.Logger
	reg   *prometheus.Registry
	ctx   context.Context
	stop  context.CancelFunc
	admin *admin.Server
}

func newProcess(name string, stderr io.Writer) *process {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	return &process{name: name, log: slog.New(slog.NewTextHandler(stderr, nil)), reg: reg, ctx: ctx, stop: stop}
}

// serveAdmin serves the node's admin endpoints on addr; empty addr: none.
func (p *process) serveAdmin(addr string, e admin.Endpoints) error {
	if addr == "" {
		return nil
	}
	s, err := admin.Listen(addr, admin.Handler(p.reg, e))
	if err != nil {
		return err
	}
	p.admin = s
	p.log.Info("admin endpoint", "addr", s.Addr(), "paths", e.Paths())
	return nil
}

func (p *process) close() {
	if p.admin != nil {
		_ = p.admin.Close()
	}
	p.stop()
}

// fail prints a command's error and returns its exit code.
func fail(stderr io.Writer, cmd string, err error, code int) int {
	fmt.Fprintf(stderr, "freshet %s: %v\n", cmd, err)
	return code
}

// brokers splits a comma-separated broker list.
func brokers(s string) []string {
	var out []string
	for _, b := range strings.Split(s, ",") {
		if b = strings.TrimSpace(b); b != "" {
			out = append(out, b)
		}
	}
	return out
}
