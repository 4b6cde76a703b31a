package postgres

import (
	"errors"
	"fmt"

	"github.com/freshetdb/freshet/schemas"
)

// ErrProtocol marks a replication message freshet cannot make sense of: a
// malformed message, a change for a relation it was never told about, a
// tuple that does not match its relation.
var ErrProtocol = errors.New("pgoutput protocol error")

// ErrDecode marks a column value that does not parse as its type says.
var ErrDecode = errors.New("pgoutput value decode error")

// StreamError is a failure of the replication stream at a WAL position. The
// slot is never acknowledged past a change that was not durably published,
// so restarting resumes before Position.
type StreamError struct {
	// Position is the WAL position of the message being handled, or the
	// last position received when the connection failed.
	Position schemas.LSN
	Err      error
}

func (e *StreamError) Error() string {
	return fmt.Sprintf("postgres replication at %s: %v", e.Position, e.Err)
}

func (e *StreamError) Unwrap() error { return e.Err }

// Temporary reports whether streaming again may get past the failure: a
// lost connection may, a message freshet cannot decode will come again.
func (e *StreamError) Temporary() bool {
	return !errors.Is(e.Err, ErrProtocol) && !errors.Is(e.Err, ErrDecode)
}
