//go:build !linux

package pgwire

import (
	"errors"
	"log/slog"
)

// eventLoop is Linux only; elsewhere sessions use the pumps.
type eventLoop struct{}

func newEventLoop(*slog.Logger) (*eventLoop, error) {
	return nil, errors.New("pgwire: the event loop needs Linux")
}

func (*eventLoop) close() {}

func (s *session) runInLoop() bool { return false }
