package pgwire

import (
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5/pgproto3"
)

// SQLSTATE codes freshet itself reports.
const (
	CodeProtocolViolation      = "08P01"
	CodeConnectionFailure      = "08006"
	CodeInvalidAuthorization   = "28000"
	CodeTooManyConnections     = "53300"
	CodeProgramLimitExceeded   = "54000"
	CodeIdleSessionTimeout     = "57P05"
	CodeIdleInTxTimeout        = "25P03"
	CodeFeatureNotSupported    = "0A000"
	CodeAdminShutdown          = "57P01"
	CodeConnectionDoesNotExist = "08003"
	CodeQueryCanceled          = "57014"
)

// Error is an error freshet reports to a client as an ErrorResponse.
type Error struct {
	Severity string // "FATAL" or "ERROR"
	Code     string // SQLSTATE
	Message  string
	Err      error // cause, not sent to the client
}

func (e *Error) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("%s %s: %s: %v", e.Severity, e.Code, e.Message, e.Err)
	}
	return e.Severity + " " + e.Code + ": " + e.Message
}

func (e *Error) Unwrap() error { return e.Err }

func fatalf(code string, err error, format string, args ...any) *Error {
	return &Error{Severity: "FATAL", Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// response returns the ErrorResponse for err: the origin's own, a freshet
// Error's, or a generic connection failure.
func response(err error) *pgproto3.ErrorResponse {
	var oe *OriginError
	if errors.As(err, &oe) {
		r := oe.Response
		return &r
	}
	var fe *Error
	if errors.As(err, &fe) {
		return &pgproto3.ErrorResponse{Severity: fe.Severity, SeverityUnlocalized: fe.Severity, Code: fe.Code, Message: fe.Message}
	}
	return &pgproto3.ErrorResponse{Severity: "FATAL", SeverityUnlocalized: "FATAL", Code: CodeConnectionFailure, Message: "freshet: origin connection failed"}
}

// encodeError appends the ErrorResponse for err to dst.
func encodeError(dst []byte, err error) []byte {
	out, encErr := response(err).Encode(dst)
	if encErr != nil {
		return dst
	}
	return out
}
