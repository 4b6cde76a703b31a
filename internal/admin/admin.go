// Package admin serves a node's HTTP endpoints: Prometheus /metrics from
// the registry the node's parts registered on, /status, the node's own
// JSON report (what `freshet status` will read), and for nodes serving
// clients /ready, their readiness probe, and /queries, their query
// templates.
package admin

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Endpoints are what a node reports besides its metrics. Status is
// required; a node without clients has no Ready and no Queries.
type Endpoints struct {
	// Status is the node's own report, served as JSON at /status.
	Status func() any
	// Ready, served at /ready, is a load balancer's readiness probe: 200
	// while it returns nil, else 503 and the reason.
	Ready func() error
	// Queries, served as JSON at /queries, lists the query templates the
	// node has seen: which are served from the cache, which go to the
	// origin, and why.
	Queries func() any
}

// Handler serves /metrics from g and e's endpoints.
func Handler(g prometheus.Gatherer, e Endpoints) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("/status", jsonHandler(e.Status))
	if e.Queries != nil {
		mux.HandleFunc("/queries", jsonHandler(e.Queries))
	}
	if e.Ready != nil {
		mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			if err := e.Ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = fmt.Fprintln(w, err)
				return
			}
			_, _ = fmt.Fprintln(w, "ready")
		})
	}
	return mux
}

// Paths are the paths h serves for e, for the log.
func (e Endpoints) Paths() string {
	paths := "/metrics /status"
	if e.Queries != nil {
		paths += " /queries"
	}
	if e.Ready != nil {
		paths += " /ready"
	}
	return paths
}

func jsonHandler(v func() any) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v())
	}
}

// Server is a running admin endpoint.
type Server struct {
	hs *http.Server
	ln net.Listener
}

// Listen serves h on addr until Close.
func Listen(addr string, h http.Handler) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("admin: listen: %w", err)
	}
	s := &Server{hs: &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}, ln: ln}
	go func() { _ = s.hs.Serve(ln) }()
	return s, nil
}

// Addr is the address it listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops it.
func (s *Server) Close() error { return s.hs.Close() }
