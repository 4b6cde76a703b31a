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
	mu sync.Mutex
	m  map[uint32]*session
}

func newKeyRegistry() *keyRegistry { return &keyRegistry{m: make(map[uint32]*session)} }

// add gives s a fresh process id and secret and registers it.
func (r *keyRegistry) add(s *session) {
	var b [8]byte
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		_, _ = rand.Read(b[:])
		pid := binary.BigEndian.Uint32(b[:4]) & 0x7fffffff // positive, as PostgreSQL's
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
// the session it names. As PostgreSQL does, it answers nothing either way.
func (s *Server) cancel(ctx context.Context, pid uint32, secret []byte) {
	sess := s.keys.lookup(pid, secret)
	if sess == nil {
		s.cfg.Logger.Debug("pgwire: cancel request for unknown key", "pid", pid)
		return
	}
	sess.cancelOrigin(ctx)
}
