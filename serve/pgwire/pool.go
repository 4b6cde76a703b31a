package pgwire

import (
	"context"
	"errors"
	"sort"
	"strings"
)

// VerifierLookup finds a role's SCRAM-SHA-256 verifier on the origin, the
// way PgBouncer's auth_query does. It returns "" and no error for a role
// that does not exist, cannot log in or has no password.
type VerifierLookup interface {
	LookupVerifier(ctx context.Context, user string) (string, error)
}

// Pool keeps origin backends for reuse once a session ends. A reused
// backend skips the origin's authentication, so a Server uses a Pool only
// when it authenticated the client itself (Config.Verifiers).
type Pool interface {
	// Acquire returns an idle backend opened with the same startup
	// parameters (key), or one opened with dial. A pool that bounds its
	// backends may first wait for one to come free, until ctx ends or
	// its own wait limit passes (ErrPoolTimeout). ctx bounds only that
	// wait: dial runs under a context of its own, so that a drain, which
	// ends waits, does not cut short a dial under way.
	Acquire(ctx context.Context, key string, dial func() (*OriginConn, error)) (*OriginConn, error)
	// Release keeps an idle backend (no transaction, nothing
	// outstanding) under key, resetting it first when reset is set, or
	// closes it. Without reset it must not block: transaction pooling
	// calls it while holding the session's lock.
	Release(ctx context.Context, key string, oc *OriginConn, reset bool)
}

// ErrAbandoned is what Pool.Acquire fails with when the client hung up,
// or cancelled its request, while it waited (Abandoned).
var ErrAbandoned = errors.New("the client hung up or cancelled while waiting for an origin connection")

type waitWatchKey struct{}

// waitWatch starts watching a session's wait for a backend: abandoned
// closes when the client hangs up or cancels its request; stop ends the
// watch.
type waitWatch func() (abandoned <-chan struct{}, stop func())

// Abandoned is for a Pool about to wait in Acquire: abandoned closes if
// the client of ctx's session hangs up or cancels its request meanwhile,
// so that the wait ends and no request of a client that left or gave up
// reaches the origin. stop ends the watch. Without a session in ctx,
// abandoned is nil.
func Abandoned(ctx context.Context) (abandoned <-chan struct{}, stop func()) {
	if w, ok := ctx.Value(waitWatchKey{}).(waitWatch); ok {
		return w()
	}
	return nil, func() {}
}

// ErrPoolTimeout is what Pool.Acquire fails with when no backend came
// free in time; the client is told 53300, as by an origin at
// max_connections.
var ErrPoolTimeout = errors.New("no origin connection came free in time")

// poolKey identifies the backends a client may reuse: same user,
// database and startup parameters.
func poolKey(params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(params[k])
		b.WriteByte(0)
	}
	return b.String()
}

// acquire takes a backend for key from the Pool, which may open one with
// dial. waits comes from stoppable: a wait for a free backend ends when
// the Server drains or closes, and as nothing has reached the origin,
// the session ends with 57P01. A dial under way is not cut short: it
// runs under its own context, as it did before the drain.
func (s *Server) acquire(waits context.Context, key string, dial func() (*OriginConn, error)) (*OriginConn, error) {
	oc, err := s.cfg.Pool.Acquire(waits, key, func() (*OriginConn, error) {
		oc, err := dial()
		if err == nil {
			s.greetings.store(key, oc.Greeting)
		}
		return oc, err
	})
	switch {
	case err == nil:
		return oc, nil
	case errors.Is(err, context.Canceled) && errors.Is(context.Cause(waits), errDrained):
		return nil, errDrained
	case errors.Is(err, ErrPoolTimeout):
		return nil, fatalf(CodeTooManyConnections, err, "freshet: %v", err)
	}
	return nil, err
}

// stoppable derives from ctx a context for waits on the Pool that ends,
// with errDrained as its cause, when the Server drains or closes, and
// that lets the Pool watch the session's client (Abandoned). It is made
// once per session, not per backend: every one registers with the
// Server's stopping context, which all sessions share. done releases it.
func (s *Server) stoppable(ctx context.Context, watch waitWatch) (_ context.Context, done func()) {
	ctx = context.WithValue(ctx, waitWatchKey{}, watch)
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(s.stopping, func() { cancel(errDrained) })
	return ctx, func() {
		stop()
		cancel(nil)
	}
}
