package pgwire

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"sync"
	"sync/atomic"

	"github.com/freshetdb/freshet/materialize"
)

// ErrServerClosed is returned by Serve after Close.
var ErrServerClosed = errors.New("pgwire: server closed")

// Server accepts PostgreSQL clients and relays them to the origin.
type Server struct {
	cfg     Config
	keys    *keyRegistry
	clients atomic.Int64

	// draining is set by Shutdown: sessions end at their next boundary.
	draining atomic.Bool
	// stopping ends with Shutdown or Close: sessions stop waiting for a
	// pooled backend.
	stopping context.Context
	stop     context.CancelFunc

	mu     sync.Mutex
	closed bool
	lns    map[net.Listener]struct{}
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup

	greetings greetings // for logins under transaction pooling
	// settings is cfg.Cache's SettingsWatcher, if it is one.
	settings materialize.SettingsWatcher
	// tls is cfg.TLS offering the "postgresql" ALPN protocol.
	tls *tls.Config

	loop       *eventLoop // started by the first session it relays
	loopFailed bool
	loopStats  *loopStats
	metrics    *serverMetrics
}

// New validates cfg and returns a Server.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:   cfg,
		keys:  newKeyRegistry(cfg.PeerID),
		lns:   make(map[net.Listener]struct{}),
		conns: make(map[net.Conn]struct{}),

		loopStats: newLoopStats(cfg.Registerer),
	}
	s.settings, _ = cfg.Cache.(materialize.SettingsWatcher)
	s.tls = serverTLS(cfg.TLS)
	s.stopping, s.stop = context.WithCancel(context.Background())
	s.metrics = newServerMetrics(cfg.Registerer, func() float64 { return float64(s.clients.Load()) })
	return s, nil
}

// Serve accepts connections on ln until ctx ends or Close is called. It
// closes ln when it returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if !s.track(ln) {
		_ = ln.Close()
		return ErrServerClosed
	}
	stop := context.AfterFunc(ctx, func() { _ = ln.Close() })
	defer stop()
	defer s.untrack(ln)
	for {
		conn, err := ln.Accept()
		if err != nil {
			if s.isClosed() || s.draining.Load() {
				return ErrServerClosed
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		if !s.trackConn(conn) {
			_ = conn.Close()
			return ErrServerClosed
		}
		go s.serveConn(ctx, conn)
	}
}

// Close stops every listener and ends every session, and waits for them.
func (s *Server) Close() error {
	s.stop()
	s.mu.Lock()
	s.closed = true
	for ln := range s.lns {
		_ = ln.Close()
	}
	for c := range s.conns {
		_ = c.Close()
	}
	if s.loop != nil {
		s.loop.close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Clients is the number of client sessions past startup.
func (s *Server) Clients() int { return int(s.clients.Load()) }

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

func (s *Server) track(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.lns[ln] = struct{}{}
	return true
}

func (s *Server) untrack(ln net.Listener) {
	s.mu.Lock()
	delete(s.lns, ln)
	s.mu.Unlock()
	_ = ln.Close()
}

func (s *Server) trackConn(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.draining.Load() {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrackConn(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	s.wg.Done()
}

// serveConn runs one client connection from its first byte to its close.
func (s *Server) serveConn(ctx context.Context, raw net.Conn) {
	defer s.untrackConn(raw)
	defer func() { _ = raw.Close() }()
	defer func() {
		// A bug in one session must not take the server down.
		if r := recover(); r != nil {
			s.cfg.Logger.Error("pgwire: session panicked", "panic", r, "remote", raw.RemoteAddr().String())
		}
	}()
	sess, err := s.startup(ctx, raw)
	if err != nil {
		s.cfg.Logger.Debug("pgwire: startup ended", "err", err, "remote", raw.RemoteAddr().String())
		return
	}
	if sess == nil {
		return // a CancelRequest
	}
	defer s.clients.Add(-1)
	sess.run(ctx)
}

// eventLoop returns the Server's event loop, starting it on first use;
// nil when closed or when it cannot run here.
func (s *Server) eventLoop() *eventLoop {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.loopFailed || s.draining.Load() {
		return nil
	}
	if s.loop == nil {
		l, err := newEventLoop(s.cfg.Logger)
		if err != nil {
			s.cfg.Logger.Warn("pgwire: no event loop; sessions use the pumps", "err", err)
			s.loopFailed = true
			return nil
		}
		s.loop = l
	}
	return s.loop
}

// adoptConn tracks a session's client connection made anew from its
// socket, so Close ends it; false when the Server is closed.
func (s *Server) adoptConn(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) dropConn(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
	_ = c.Close()
}
