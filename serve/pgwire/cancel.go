package pgwire

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"sync"
	"time"
)

// cancelTimeout bounds how long forwarding a cancel to the origin may take.
const cancelTimeout = 5 * time.Second

// keyRegistry maps freshet's own BackendKeyData to the session holding
// the origin backend, for CancelRequests.
type keyRegistry struct {
	peer int // Config.PeerID, in every process id
	mu   sync.Mutex
	m    map[uint32]*session
}

func newKeyRegistry(peer int) *keyRegistry {
	return &keyRegistry{peer: peer, m: make(map[uint32]*session)}
}

// add gives s a fresh process id and secret and registers it.
func (r *keyRegistry) add(s *session) {
	var b [8]byte
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		_, _ = rand.Read(b[:])
		pid := withPeer(binary.BigEndian.Uint32(b[:4]), r.peer) // positive, as PostgreSQL's
		if _, taken := r.m[pid]; pid == 0 || taken {
			continue
		}
		s.pid = pid
		copy(s.secret[:], b[4:])
		r.m[pid] = s
		return
	}
}

func (r *keyRegistry) remove(s *session) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m[s.pid] == s {
		delete(r.m, s.pid)
	}
}

// sessions are the registered sessions.
func (r *keyRegistry) sessions() []*session {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*session, 0, len(r.m))
	for _, s := range r.m {
		out = append(out, s)
	}
	return out
}

func (r *keyRegistry) lookup(pid uint32, secret []byte) *session {
	r.mu.Lock()
	s := r.m[pid]
	r.mu.Unlock()
	if s == nil || subtle.ConstantTimeCompare(s.secret[:], secret) != 1 {
		return nil
	}
	return s
}

// cancel forwards a client's CancelRequest to the origin backend serving
// the session it names, through the peer that holds the session when the
// key is another peer's. As PostgreSQL does, it answers nothing either way.
func (s *Server) cancel(ctx context.Context, pid uint32, secret []byte) {
	addr, ok := s.peerFor(pid)
	if !ok {
		s.cancelLocal(ctx, pid, secret)
		return
	}
	if err := forwardCancel(ctx, addr, pid, secret); err != nil {
		s.metrics.cancel("peer_failed")
		s.cfg.Logger.Warn("pgwire: forwarding a cancel request to a peer failed", "peer", peerOf(pid), "addr", addr, "err", err)
		return
	}
	s.metrics.cancel("peer")
}

// cancelLocal cancels a session of this front end's.
func (s *Server) cancelLocal(ctx context.Context, pid uint32, secret []byte) {
	sess := s.keys.lookup(pid, secret)
	if sess == nil {
		s.metrics.cancel("unknown")
		s.cfg.Logger.Debug("pgwire: cancel request for unknown key", "pid", pid)
		return
	}
	s.metrics.cancel("local")
	sess.cancelOrigin(ctx)
}
