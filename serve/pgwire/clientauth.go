package pgwire

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
)

// maxAuthMessage bounds a client's password-family message: a SCRAM
// message or a password is far smaller.
const maxAuthMessage = 64 << 10

// clientAuth is the client's side of the relayed authentication. It
// enforces freshet's own policy on what the origin asks: no cleartext
// password outside TLS, no channel binding advertised, nothing but
// password-family messages from the client until AuthenticationOk.
type clientAuth struct {
	conn net.Conn
	r    *bufio.Reader
	tls  bool
	max  int
}

var _ ClientAuth = (*clientAuth)(nil)

func (c *clientAuth) Exchange(ctx context.Context, msg pgproto3.BackendMessage, reply bool) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	msg, err := c.policy(msg)
	if err != nil {
		return nil, err
	}
	buf, err := msg.Encode(nil)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", msg, err)
	}
	if _, err := c.conn.Write(buf); err != nil {
		return nil, fmt.Errorf("write to client: %w", err)
	}
	if !reply {
		return nil, nil
	}
	return c.readPassword()
}

// policy vets and, for SASL, rewrites an authentication request.
func (c *clientAuth) policy(msg pgproto3.BackendMessage) (pgproto3.BackendMessage, error) {
	switch m := msg.(type) {
	case *pgproto3.AuthenticationCleartextPassword:
		if !c.tls {
			return nil, fatalf(CodeInvalidAuthorization, nil, "freshet: the origin asks for a cleartext password, which freshet relays only over TLS")
		}
	case *pgproto3.AuthenticationSASL:
		var mechs []string
		for _, mech := range m.AuthMechanisms {
			// Channel binding would bind to freshet's TLS, not the
			// origin's: the origin's check would fail, so never offer it.
			if !strings.HasSuffix(mech, "-PLUS") {
				mechs = append(mechs, mech)
			}
		}
		if len(mechs) == 0 {
			return nil, fatalf(CodeInvalidAuthorization, nil, "freshet: the origin offers only channel-bound SASL mechanisms, which cannot be relayed")
		}
		return &pgproto3.AuthenticationSASL{AuthMechanisms: mechs}, nil
	}
	return msg, nil
}

// readPassword reads the client's answer, which must be a 'p' message.
func (c *clientAuth) readPassword() ([]byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(c.r, hdr[:]); err != nil {
		return nil, fmt.Errorf("read client auth response: %w", err)
	}
	n := int(int32(binary.BigEndian.Uint32(hdr[1:])))
	if hdr[0] != 'p' {
		return nil, fatalf(CodeProtocolViolation, nil, "expected password response, got message type %q", hdr[0])
	}
	if n < 4 || n-4 > maxAuthMessage || n > c.max {
		return nil, fatalf(CodeProtocolViolation, nil, "invalid password message length %d", n)
	}
	body := make([]byte, n-4)
	if _, err := io.ReadFull(c.r, body); err != nil {
		return nil, fmt.Errorf("read client auth response: %w", err)
	}
	return body, nil
}

// scram authenticates the client against v itself and returns the
// ClientKey its proof reveals. It leaves AuthenticationOk to the caller.
func (c *clientAuth) scram(v SCRAMVerifier, user string) ([]byte, error) {
	srv := &scramServer{v: v}
	if err := c.send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}); err != nil {
		return nil, err
	}
	p, err := c.readPassword()
	if err != nil {
		return nil, err
	}
	var first pgproto3.SASLInitialResponse
	if err := first.Decode(p); err != nil || first.AuthMechanism != "SCRAM-SHA-256" {
		return nil, fatalf(CodeProtocolViolation, err, "expected a SCRAM-SHA-256 SASLInitialResponse")
	}
	serverFirst, err := srv.first(string(first.Data))
	if err != nil {
		return nil, fatalf(CodeProtocolViolation, err, "%v", err)
	}
	if err := c.send(&pgproto3.AuthenticationSASLContinue{Data: []byte(serverFirst)}); err != nil {
		return nil, err
	}
	if p, err = c.readPassword(); err != nil {
		return nil, err
	}
	var final pgproto3.SASLResponse
	if err := final.Decode(p); err != nil {
		return nil, fatalf(CodeProtocolViolation, err, "malformed SASLResponse")
	}
	serverFinal, clientKey, err := srv.final(string(final.Data))
	if errors.Is(err, errBadProof) {
		return nil, &Error{Severity: "FATAL", Code: "28P01", Message: fmt.Sprintf("password authentication failed for user %q", user)}
	}
	if err != nil {
		return nil, fatalf(CodeProtocolViolation, err, "%v", err)
	}
	if err := c.send(&pgproto3.AuthenticationSASLFinal{Data: []byte(serverFinal)}); err != nil {
		return nil, err
	}
	return clientKey, nil
}

func (c *clientAuth) send(m pgproto3.BackendMessage) error {
	buf, err := m.Encode(nil)
	if err != nil {
		return err
	}
	if _, err := c.conn.Write(buf); err != nil {
		return fmt.Errorf("write to client: %w", err)
	}
	return nil
}
