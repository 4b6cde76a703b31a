package pgwire

import (
	"errors"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// serverMetrics are the front end's connection metrics: how many clients
// are connected, and how each connection's startup ended (refusals and
// failed logins show there, as in PgBouncer's SHOW STATS and its log).
type serverMetrics struct {
	startups *prometheus.CounterVec
	// uncached counts sessions that stopped being answered from the
	// cache, by why: a session made unknown never reaches a lookup, so
	// the materializer's bypass counts do not show it.
	uncached *prometheus.CounterVec
	cancels  *prometheus.CounterVec
}

func newServerMetrics(reg prometheus.Registerer, clients func() float64) *serverMetrics {
	m := &serverMetrics{
		startups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "freshet_pgwire_startups_total",
			Help: "Client connections by how their startup ended: ok, cancel (a CancelRequest), auth_failed, too_many_clients, pool_timeout (no pooled origin connection came free in time), protocol_violation, origin_unreachable, error, client_gone.",
		}, []string{"result"}),
		uncached: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "freshet_pgwire_sessions_uncached_total",
			Help: "Sessions no longer answered from the cache (relayed from then on), by why: setting (a SET the cache does not follow), set_config, session_state (DISCARD, PREPARE, DECLARE, LISTEN...), temporary_relation, parameter_status, encoding (not UTF-8, or nonstandard strings), duplicate_statement, large_statement, settings_function (a statement that may run one of the origin's functions that SET what PostgreSQL does not report).",
		}, []string{"reason"}),
		cancels: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "freshet_pgwire_cancel_requests_total",
			Help: "CancelRequests by what became of them: local (a session of this front end's), peer (forwarded to the peer that holds the session), peer_failed (that peer could not be reached), unknown (no session has the key).",
		}, []string{"outcome"}),
	}
	if reg == nil {
		return m
	}
	m.startups = registerCounterVec(reg, m.startups)
	m.uncached = registerCounterVec(reg, m.uncached)
	m.cancels = registerCounterVec(reg, m.cancels)
	// A second Server on the same registry keeps the first one's gauge.
	_ = reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "freshet_pgwire_clients",
		Help: "Client sessions connected (past startup).",
	}, clients))
	return m
}

// registerCounterVec registers cv on reg, or returns the one a Server
// before registered there (several Servers may share a registry).
func registerCounterVec(reg prometheus.Registerer, cv *prometheus.CounterVec) *prometheus.CounterVec {
	err := reg.Register(cv)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
			return existing
		}
	}
	return cv
}

// uncachedSession counts a session that stopped being answered from the
// cache.
func (m *serverMetrics) uncachedSession(reason string) {
	m.uncached.WithLabelValues(reason).Inc()
}

// cancel counts a CancelRequest by its outcome.
func (m *serverMetrics) cancel(outcome string) {
	m.cancels.WithLabelValues(outcome).Inc()
}

// startup counts how a connection's startup ended.
func (m *serverMetrics) startup(sess *session, err error) {
	m.startups.WithLabelValues(startupResult(sess, err)).Inc()
}

func startupResult(sess *session, err error) string {
	if err == nil {
		if sess == nil {
			return "cancel"
		}
		return "ok"
	}
	var code string
	var fe *Error
	var oe *OriginError
	switch {
	case errors.Is(err, ErrPoolTimeout):
		return "pool_timeout"
	case errors.Is(err, ErrAbandoned):
		return "client_gone"
	case errors.As(err, &fe):
		code = fe.Code
	case errors.As(err, &oe):
		code = oe.Response.Code
	default:
		return "client_gone" // the client left, timed out or broke TLS
	}
	switch {
	case strings.HasPrefix(code, "28"):
		return "auth_failed"
	case code == CodeTooManyConnections:
		return "too_many_clients"
	case code == CodeProtocolViolation:
		return "protocol_violation"
	case strings.HasPrefix(code, "08"):
		return "origin_unreachable"
	}
	return "error"
}
