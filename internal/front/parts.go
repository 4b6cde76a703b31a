package front

import (
	"context"
	"fmt"
	"sync/atomic"
)

// Part is one long-running piece of a node (change capture, the
// materializer, the front end, a Kafka consumer).
type Part struct {
	Name string
	Run  func(ctx context.Context) error
	// Drain, when set, is called when the node is asked to stop, while
	// every part still runs: the front end lets its clients finish their
	// transactions against a materializer that is still fed.
	Drain func(ctx context.Context)
}

// RunParts runs parts until ctx ends or one of them returns, calls ready
// once they are started, then, when ctx ended, calls their Drains, one
// after the other. It then cancels the parts, calls stop (which must make
// parts that ignore ctx return, e.g. by closing a listener) and waits for
// all of them. It returns the first failure, named by its part; a part
// ending because ctx ended is not a failure.
func RunParts(ctx context.Context, parts []Part, ready, stop func()) error {
	// The parts outlive ctx by the drains.
	partsCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	var stopping atomic.Bool
	errc := make(chan error, len(parts))
	for _, p := range parts {
		go func() {
			err := p.Run(partsCtx)
			if err != nil && !stopping.Load() {
				err = fmt.Errorf("%s: %w", p.Name, err)
			} else {
				err = nil
			}
			errc <- err
		}()
	}
	if ready != nil {
		ready()
	}
	var first error
	pending := len(parts)
	select {
	case first = <-errc:
		pending--
	case <-ctx.Done():
		stopping.Store(true)
		for _, p := range parts {
			if p.Drain != nil {
				p.Drain(partsCtx)
			}
		}
	}
	stopping.Store(true)
	cancel()
	if stop != nil {
		stop()
	}
	for ; pending > 0; pending-- {
		if err := <-errc; first == nil {
			first = err
		}
	}
	return first
}
