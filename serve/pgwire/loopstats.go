package pgwire

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// loopStats count cached sessions' moves between the pumps and the event
// loop, and the hits the loop answered: a session that keeps moving shows
// as transitions growing faster than hits.
type loopStats struct {
	parks, handBacks, hits atomic.Int64
	writeStalls            atomic.Int64 // responses the client's socket did not take at once
	moves                  *prometheus.CounterVec
}

func newLoopStats(reg prometheus.Registerer) *loopStats {
	ls := &loopStats{moves: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "freshet_pgwire_loop_transitions_total",
		Help: "Cached sessions moved into the event loop to have their cache hits answered there (park), or back to the goroutine pumps (hand_back).",
	}, []string{"direction"})}
	if reg != nil {
		ls.moves = registerCounterVec(reg, ls.moves)
	}
	return ls
}

func (ls *loopStats) parked() {
	ls.parks.Add(1)
	ls.moves.WithLabelValues("park").Inc()
}

func (ls *loopStats) handedBack(hits int) {
	ls.handBacks.Add(1)
	ls.hits.Add(int64(hits))
	ls.moves.WithLabelValues("hand_back").Inc()
}
