package embedded

import (
	"time"

	"github.com/freshetdb/freshet/internal/admin"
	"github.com/freshetdb/freshet/materialize"
)

// Status is `freshet up`'s /status.
type Status struct {
	// Durable is the position up to which the slot may be acknowledged.
	Durable   string          `json:"durable_position,omitempty"`
	Watermark admin.Watermark `json:"watermark"`
	// Cache is nil until the node has started.
	Cache *materialize.Stats `json:"cache,omitempty"`
}

// Status reports the node's progress, freshness and cache counters.
func (n *Node) Status() Status {
	m := n.m.Load()
	bound := n.cfg.StalenessBound
	if bound == 0 {
		bound = 5 * time.Second // the materializer's default
	}
	s := Status{Watermark: admin.WatermarkOf(m, bound, time.Now())}
	if p := n.pipe.Load(); p != nil && !p.Durable().IsZero() {
		s.Durable = p.Durable().String()
	}
	if m != nil {
		st := m.Stats()
		s.Cache = &st
	}
	return s
}
