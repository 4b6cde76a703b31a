// Package admin serves a node's HTTP endpoints: Prometheus /metrics from
// the registry the node's parts registered on, /status, the node's own
// JSON report (what `freshet status` will read), and for nodes serving
// clients /ready, their readiness probe.
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

// Handler serves /metrics from g and /status as the JSON of status().
// With ready set it also serves /ready, a load balancer's readiness
// probe: 200 while ready returns nil, else 503 and the reason.
func Handler(g prometheus.Gatherer, status func() any, ready func() error) http.Handler {
	mux := http.NewServeMux()
	if ready != nil {
		mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			if err := ready(); err != nil {
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = fmt.Fprintln(w, err)
				return
			}
			_, _ = fmt.Fprintln(w, "ready")
		})
	}
	mux.Handle("/metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{}))
	mux.HandleFunc("/status", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(status())
	})
	return mux
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
