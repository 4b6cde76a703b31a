package pgwire

import (
	"bufio"
	"context"
	"net"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Connector opens authenticated origin backends. connectors/postgres
// implements it; serve never dials the origin itself.
type Connector interface {
	// Connect opens a backend for the client whose StartupMessage is
	// startup and relays the origin's authentication exchange through
	// client. It returns once the origin sent ReadyForQuery. When the
	// origin refuses the client, the error is an *OriginError carrying the
	// origin's ErrorResponse.
	Connect(ctx context.Context, startup *pgproto3.StartupMessage, client ClientAuth) (*OriginConn, error)
	// Cancel asks the origin to cancel whatever the backend identified by
	// key is running.
	Cancel(ctx context.Context, key BackendKey) error
}

// ClientAuth is the client's side of a relayed authentication exchange.
type ClientAuth interface {
	// Exchange sends msg (an authentication request or a
	// NegotiateProtocolVersion) to the client. When reply is true it waits
	// for the client's answer, a password-family message ('p'), and
	// returns that message's body, unparsed.
	Exchange(ctx context.Context, msg pgproto3.BackendMessage, reply bool) ([]byte, error)
}

// BackendKey identifies a backend for a CancelRequest.
type BackendKey struct {
	ProcessID uint32
	SecretKey []byte
	// Host is where the Connector reached the backend, for its cancels
	// (an origin may have several).
	Host string
}

// OriginConn is an authenticated origin backend, ready for queries.
type OriginConn struct {
	Conn net.Conn
	// Reader reads Conn and may already hold bytes the origin sent.
	Reader *bufio.Reader
	// Key is the origin's own BackendKeyData.
	Key BackendKey
	// Greeting holds the encoded messages the origin sent between
	// AuthenticationOk and ReadyForQuery other than BackendKeyData
	// (ParameterStatus, NoticeResponse), to be forwarded verbatim.
	Greeting []byte
	// TxStatus is the status byte of the origin's first ReadyForQuery.
	TxStatus byte
	// State identifies the session settings replayed on this backend in
	// transaction pooling; "" after a reset. Owned by the Server.
	State string
	// Prepared are the named statements freshet prepared on this backend
	// in transaction pooling (by their backend names); nil after a reset,
	// which drops them. Owned by the Server.
	Prepared map[string]bool
}

// OriginError is an ErrorResponse the origin sent during startup, such as
// a failed authentication. It is forwarded to the client as it is.
type OriginError struct {
	Response pgproto3.ErrorResponse
}

func (e *OriginError) Error() string {
	return "origin: " + e.Response.Severity + " " + e.Response.Code + ": " + e.Response.Message
}
