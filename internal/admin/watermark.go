package admin

import (
	"time"

	"github.com/freshetdb/freshet/materialize"
)

// Watermark is a materializer's freshness as /status reports it.
type Watermark struct {
	// Set is false before the first progress marker (and after a purge):
	// every read goes to the origin.
	Set bool `json:"set"`
	// Position is the watermark; CommitTime the commit (or heartbeat)
	// time of the marker that reported it.
	Position   string    `json:"position,omitempty"`
	CommitTime time.Time `json:"commit_time,omitzero"`
	// LagSeconds is now minus CommitTime (-1 when not set).
	LagSeconds float64 `json:"lag_seconds"`
	// StalenessBound is the lag past which reads go to the origin.
	StalenessBound string `json:"staleness_bound"`
	// Stale: reads are tunneled now because the watermark is unset or
	// older than the bound.
	Stale bool `json:"stale"`
}

// WatermarkOf reports m's watermark against bound at now.
func WatermarkOf(m *materialize.Materializer, bound time.Duration, now time.Time) Watermark {
	w := Watermark{LagSeconds: -1, StalenessBound: bound.String(), Stale: true}
	if m == nil {
		return w
	}
	pos, at, ok := m.Watermark()
	if !ok {
		return w
	}
	lag := now.Sub(at)
	w.Set, w.Position, w.CommitTime, w.LagSeconds = true, pos.String(), at, lag.Seconds()
	w.Stale = lag > bound
	return w
}
