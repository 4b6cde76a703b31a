package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
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

// serves reports whether a check's answer lets the host serve at all:
// it fits, or is not preferred.
func serves(err error) bool { return err == nil || errors.Is(err, ErrHostNotPreferred) }

// hostChecks keeps each host's last check. A dial uses the answer it has
// and, when it is older than maxAge, has it checked again in the
// background: a session's dial waits for a check (a connection and a
// query) only when a host has never been checked, so a host that hangs
// does not stall the dials that skip it, and a host that changed role (a
// failover) is seen within maxAge and one check.
type hostChecks struct {
	check   HostCheck
	maxAge  time.Duration
	timeout time.Duration // of one check
	log     *slog.Logger
	observe func(host, outcome string) // may be nil

	mu    sync.Mutex
	hosts map[string]*hostCheck
	// answers counts the checks ended, so that a dial can tell that
	// answers changed while it went over the hosts.
	answers atomic.Uint64
}

type hostCheck struct {
	mu      sync.Mutex
	checked time.Time // zero until the first check ends
	err     error
	first   chan struct{} // closed when the first check ends
	// checking is closed when the check under way ends; nil when none is.
	checking chan struct{}
}

func newHostChecks(check HostCheck, maxAge, timeout time.Duration, log *slog.Logger) *hostChecks {
	return &hostChecks{check: check, maxAge: maxAge, timeout: timeout, log: log, hosts: map[string]*hostCheck{}}
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

func (hc *hostChecks) host(addr string) *hostCheck {
	hc.mu.Lock()
	defer hc.mu.Unlock()
	h := hc.hosts[addr]
	if h == nil {
		h = &hostCheck{first: make(chan struct{})}
		hc.hosts[addr] = h
	}
	return h
}

// renew starts a check of h when it has no answer younger than maxAge
// and none is under way.
func (hc *hostChecks) renew(addr string, h *hostCheck) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.checking == nil && (h.checked.IsZero() || time.Since(h.checked) >= hc.maxAge) {
		h.checking = make(chan struct{})
		go hc.recheck(addr, h)
	}
}

// fits reports whether addr's last answer lets it serve (a host not
// preferred does; one never checked does), renewing an old answer.
func (hc *hostChecks) fits(addr string) bool {
	if hc == nil {
		return true
	}
	h := hc.host(addr)
	hc.renew(addr, h)
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.checked.IsZero() || serves(h.err)
}

// result is addr's last check, waiting for the first one if need be.
func (hc *hostChecks) result(ctx context.Context, addr string) error {
	h := hc.host(addr)
	hc.renew(addr, h)
	select {
	case <-h.first:
	case <-ctx.Done():
		return fmt.Errorf("origin %s not checked yet: %w", addr, ctx.Err())
	}
	h.mu.Lock()
	err := h.err
	h.mu.Unlock()
	if !serves(err) {
		return fmt.Errorf("origin %s not chosen: %w", addr, err)
	}
	return err
}

// recheck checks addr on a context of its own, bounded by timeout: a
// check outlives the dial that asked for it, for the dials after.
func (hc *hostChecks) recheck(addr string, h *hostCheck) {
	ctx, cancel := context.WithTimeout(context.Background(), hc.timeout)
	defer cancel()
	err := hc.check(ctx, addr)
	h.mu.Lock()
	defer h.mu.Unlock()
	first := h.checked.IsZero()
	if !first && (err == nil) != (h.err == nil) {
		hc.log.Info("postgres: an origin host's fitness for relayed sessions changed (target_session_attrs)",
			"host", addr, "fits", err == nil, "why", err)
	}
	h.checked, h.err = time.Now(), err
	hc.answers.Add(1)
	if hc.observe != nil {
		hc.observe(addr, checkOutcome(err))
	}
	close(h.checking)
	h.checking = nil
	if first {
		close(h.first)
	}
}

// checkOutcome names a check's answer for OriginConfig.OnHostCheck.
func checkOutcome(err error) string {
	switch {
	case err == nil:
		return "fits"
	case errors.Is(err, ErrHostNotPreferred):
		return "not_preferred"
	}
	return "refused"
}

// answered is the number of checks ended so far (0 without checks).
func (hc *hostChecks) answered() uint64 {
	if hc == nil {
		return 0
	}
	return hc.answers.Load()
}

// awaitChecks reports whether a dial that found no host should try once
// more: some check ended since answered was since (answers were renewed
// while it went over the hosts, the window of a failover), or some is
// under way and ends before ctx.
func (hc *hostChecks) awaitChecks(ctx context.Context, since uint64) bool {
	if hc == nil {
		return false
	}
	var under []chan struct{}
	hc.mu.Lock()
	for _, h := range hc.hosts {
		h.mu.Lock()
		if h.checking != nil {
			under = append(under, h.checking)
		}
		h.mu.Unlock()
	}
	hc.mu.Unlock()
	for _, c := range under {
		select {
		case <-c:
		case <-ctx.Done():
			return false
		}
	}
	return len(under) > 0 || hc.answers.Load() != since
}
