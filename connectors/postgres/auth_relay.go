package postgres

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"time"

	"github.com/freshetdb/freshet/serve/pgwire"
	"github.com/jackc/pgx/v5/pgproto3"
)

// Authentication request codes (AuthenticationXXX messages).
const (
	authOK                = 0
	authCleartextPassword = 3
	authMD5Password       = 5
	authSASL              = 10
	authSASLContinue      = 11
	authSASLFinal         = 12
)

// Connect opens an origin backend for a client and relays the origin's
// authentication exchange, byte for byte, through client: freshet never
// sees a password, only the messages that prove it.
func (o *Origin) Connect(ctx context.Context, startup *pgproto3.StartupMessage, client pgwire.ClientAuth) (*pgwire.OriginConn, error) {
	conn, host, err := o.dial(ctx)
	if err != nil {
		return nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	oc := &pgwire.OriginConn{Conn: conn, Reader: bufio.NewReaderSize(conn, o.cfg.BufferSize)}
	if err := o.handshake(ctx, oc, startup, client); err != nil {
		_ = conn.Close()
		return nil, err
	}
	oc.Key.Host = host
	_ = conn.SetDeadline(time.Time{})
	return oc, nil
}

// handshake sends the StartupMessage and reads up to ReadyForQuery.
func (o *Origin) handshake(ctx context.Context, oc *pgwire.OriginConn, startup *pgproto3.StartupMessage, client pgwire.ClientAuth) error {
	buf, err := startup.Encode(nil)
	if err != nil {
		return fmt.Errorf("encode startup: %w", err)
	}
	if _, err := oc.Conn.Write(buf); err != nil {
		return fmt.Errorf("origin startup: %w", err)
	}
	authenticated := false
	for {
		typ, body, err := o.readMessage(oc.Reader)
		if err != nil {
			return err
		}
		switch typ {
		case 'R':
			if authenticated {
				return fmt.Errorf("origin sent an authentication request after AuthenticationOk")
			}
			if authenticated, err = o.relayAuth(ctx, oc, body, client); err != nil {
				return err
			}
		case 'E':
			var e pgproto3.ErrorResponse
			if err := e.Decode(body); err != nil {
				return fmt.Errorf("origin error response: %w", err)
			}
			return &pgwire.OriginError{Response: e}
		case 'v':
			var m pgproto3.NegotiateProtocolVersion
			if err := m.Decode(body); err != nil {
				return fmt.Errorf("origin NegotiateProtocolVersion: %w", err)
			}
			if _, err := client.Exchange(ctx, &m, false); err != nil {
				return err
			}
		case 'K':
			if !authenticated || len(body) < 8 {
				return fmt.Errorf("origin sent BackendKeyData out of place")
			}
			oc.Key = pgwire.BackendKey{ProcessID: binary.BigEndian.Uint32(body), SecretKey: append([]byte(nil), body[4:]...)}
		case 'S', 'N':
			oc.Greeting = appendMessage(oc.Greeting, typ, body)
		case 'Z':
			if !authenticated || len(body) != 1 {
				return fmt.Errorf("origin sent ReadyForQuery out of place")
			}
			oc.TxStatus = body[0]
			return nil
		default:
			return fmt.Errorf("origin sent unexpected message %q during startup", typ)
		}
	}
}

// relayAuth passes one authentication request to the client and, when it
// wants one, the client's answer back to the origin.
func (o *Origin) relayAuth(ctx context.Context, oc *pgwire.OriginConn, body []byte, client pgwire.ClientAuth) (ok bool, err error) {
	if len(body) < 4 {
		return false, fmt.Errorf("origin authentication request too short")
	}
	var msg pgproto3.BackendMessage
	reply := true
	switch code := binary.BigEndian.Uint32(body); code {
	case authOK:
		msg, reply = &pgproto3.AuthenticationOk{}, false
	case authCleartextPassword:
		msg = &pgproto3.AuthenticationCleartextPassword{}
	case authMD5Password:
		msg = &pgproto3.AuthenticationMD5Password{}
	case authSASL:
		msg = &pgproto3.AuthenticationSASL{}
	case authSASLContinue:
		msg = &pgproto3.AuthenticationSASLContinue{}
	case authSASLFinal:
		msg, reply = &pgproto3.AuthenticationSASLFinal{}, false
	default:
		return false, &pgwire.Error{Severity: "FATAL", Code: pgwire.CodeFeatureNotSupported,
			Message: fmt.Sprintf("freshet cannot relay origin authentication method %d", code)}
	}
	if err := msg.Decode(body); err != nil {
		return false, fmt.Errorf("origin authentication request: %w", err)
	}
	answer, err := client.Exchange(ctx, msg, reply)
	if err != nil {
		return false, err
	}
	if !reply {
		return binary.BigEndian.Uint32(body) == authOK, nil
	}
	if _, err := oc.Conn.Write(appendMessage(nil, 'p', answer)); err != nil {
		return false, fmt.Errorf("origin auth response: %w", err)
	}
	return false, nil
}

// readMessage reads one whole backend message during startup.
func (o *Origin) readMessage(r *bufio.Reader) (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, nil, fmt.Errorf("read origin: %w", err)
	}
	n := int(int32(binary.BigEndian.Uint32(hdr[1:])))
	if n < 4 || n-4 > o.cfg.MaxStartupMessage {
		return 0, nil, fmt.Errorf("origin message %q has invalid length %d", hdr[0], n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, fmt.Errorf("read origin: %w", err)
	}
	return hdr[0], body, nil
}

func appendMessage(dst []byte, typ byte, body []byte) []byte {
	dst = append(dst, typ, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], uint32(len(body)+4))
	return append(dst, body...)
}
