//go:build !linux

package pgwire

import (
	"context"
	"errors"
	"log/slog"
)

// eventLoop is Linux only; elsewhere sessions use the pumps.
type eventLoop struct{}

func newEventLoop(*slog.Logger) (*eventLoop, error) {
	return nil, errors.New("pgwire: the event loop needs Linux")
}

func (*eventLoop) close() {}

func (s *session) runInLoop(context.Context) bool { return false }

const parkSupported = false

func (s *session) parkInLoop(context.Context) bool {
	s.unpark()
	return false
}
