package front

import (
	"context"
	"fmt"
)

// Part is one long-running piece of a node (change capture, the
// materializer, the front end, a Kafka consumer).
type Part struct {
	Name string
	Run  func(ctx context.Context) error
}

// RunParts runs parts until ctx ends or one of them returns, calls ready
// once they are started, then cancels the rest, calls stop (which must
// make parts that ignore ctx return, e.g. by closing a listener) and waits
// for all of them. It returns the first failure, named by its part; a part
// ending because ctx ended is not a failure.
func RunParts(ctx context.Context, parts []Part, ready, stop func()) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(parts))
	for _, p := range parts {
		go func() {
			err := p.Run(ctx)
			if err != nil && ctx.Err() == nil {
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
	}
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
