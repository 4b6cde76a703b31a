package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// HostCheck reports whether the origin host at addr may serve relayed
// sessions, as libpq's target_session_attrs decides: nil if it may,
// ErrHostNotPreferred if only when no other host may (prefer-standby), and
// another error (the host's role, or why it could not be asked) if not.
//
// A relayed session's login is the client's own, relayed, so it cannot be
// retried on another host once the chosen one turns out to be a standby,
// as libpq retries. The check is therefore made beforehand, on a
// connection of freshet's own (front.OriginDialing makes it with the
// origin URL's credentials).
type HostCheck func(ctx context.Context, addr string) error

// ErrHostNotPreferred: the host may serve only when no preferred one can.
var ErrHostNotPreferred = errors.New("not a preferred host (target_session_attrs=prefer-standby)")

// hostChecks keeps each host's last check for a while, so that a session's
// dial pays a check (a connection and a query) at most once per maxAge per
// host; a host that changed role (a failover) is seen within maxAge.
type hostChecks struct {
	check  HostCheck
	maxAge time.Duration
	log    *slog.Logger

	mu    sync.Mutex
	hosts map[string]*hostCheck
}

type hostCheck struct {
	mu      sync.Mutex // held while checking, so one check serves the waiters
	checked time.Time
	err     error
}

func newHostChecks(check HostCheck, maxAge time.Duration, log *slog.Logger) *hostChecks {
	return &hostChecks{check: check, maxAge: maxAge, log: log, hosts: map[string]*hostCheck{}}
}

// admits reports whether a dial may try addr in the given pass: in the
// first, only hosts that pass the check; in the second, those not
// preferred. A nil hostChecks admits every host in the first pass.
func (hc *hostChecks) admits(ctx context.Context, addr string, pass int) error {
	if hc == nil {
		return nil
	}
	err := hc.result(ctx, addr)
	if pass == 1 {
		if errors.Is(err, ErrHostNotPreferred) {
			return nil
		}
		return errSkipped
	}
	return err
}

// errSkipped: the host was judged in the first pass already.
var errSkipped = errors.New("skipped")

// passes is how many passes a dial makes over the hosts.
func (hc *hostChecks) passes() int {
	if hc == nil {
		return 1
	}
	return 2
}

// result is addr's check, made again when older than maxAge.
func (hc *hostChecks) result(ctx context.Context, addr string) error {
	hc.mu.Lock()
	h := hc.hosts[addr]
	if h == nil {
		h = &hostCheck{}
		hc.hosts[addr] = h
	}
	hc.mu.Unlock()

	h.mu.Lock()
	defer h.mu.Unlock()
	if h.checked.IsZero() || time.Since(h.checked) >= hc.maxAge {
		err := hc.check(ctx, addr)
		if err != nil && ctx.Err() != nil {
			// The dial's own deadline, not the host's answer: not kept.
			return fmt.Errorf("origin %s not checked: %w", addr, err)
		}
		if !h.checked.IsZero() && (err == nil) != (h.err == nil) {
			hc.log.Info("postgres: an origin host's fitness for relayed sessions changed (target_session_attrs)",
				"host", addr, "fits", err == nil, "why", err)
		}
		h.checked, h.err = time.Now(), err
	}
	if h.err != nil && !errors.Is(h.err, ErrHostNotPreferred) {
		return fmt.Errorf("origin %s not chosen: %w", addr, h.err)
	}
	return h.err
}
