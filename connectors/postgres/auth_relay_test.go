package postgres

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/freshetdb/freshet/serve/pgwire"
	"github.com/jackc/pgx/v5/pgproto3"
)

// byteConn is a net.Conn reading a fixed input and discarding writes.
type byteConn struct {
	r   *bytes.Reader
	out bytes.Buffer
}

func (c *byteConn) Read(p []byte) (int, error)       { return c.r.Read(p) }
func (c *byteConn) Write(p []byte) (int, error)      { return c.out.Write(p) }
func (c *byteConn) Close() error                     { return nil }
func (c *byteConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *byteConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *byteConn) SetDeadline(time.Time) error      { return nil }
func (c *byteConn) SetReadDeadline(time.Time) error  { return nil }
func (c *byteConn) SetWriteDeadline(time.Time) error { return nil }
func (c *byteConn) written() []byte                  { return c.out.Bytes() }
func newByteConn(in []byte) *byteConn                { return &byteConn{r: bytes.NewReader(in)} }
func (a answerAll) Exchange(_ context.Context, _ pgproto3.BackendMessage, reply bool) ([]byte, error) {
	if reply {
		return []byte("answer\x00"), nil
	}
	return nil, nil
}

// answerAll is a client that answers every request.
type answerAll struct{}

func backendMsgs(t testing.TB, msgs ...pgproto3.BackendMessage) []byte {
	t.Helper()
	var b []byte
	for _, m := range msgs {
		var err error
		if b, err = m.Encode(b); err != nil {
			t.Fatal(err)
		}
	}
	return b
}

func handshake(t testing.TB, originBytes []byte) (*pgwire.OriginConn, *byteConn, error) {
	t.Helper()
	o, err := NewOrigin(OriginConfig{Addr: "127.0.0.1:1", MaxStartupMessage: 4096})
	if err != nil {
		t.Fatal(err)
	}
	conn := newByteConn(originBytes)
	oc := &pgwire.OriginConn{Conn: conn, Reader: bufio.NewReader(conn)}
	err = o.handshake(context.Background(), oc, &pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": "u"}}, answerAll{})
	return oc, conn, err
}

func TestHandshake(t *testing.T) {
	ok := []pgproto3.BackendMessage{
		&pgproto3.AuthenticationMD5Password{Salt: [4]byte{1, 2, 3, 4}},
		&pgproto3.AuthenticationOk{},
		&pgproto3.ParameterStatus{Name: "server_version", Value: "15.0"},
		&pgproto3.BackendKeyData{ProcessID: 42, SecretKey: []byte{9, 9, 9, 9}},
		&pgproto3.ReadyForQuery{TxStatus: 'I'},
	}
	t.Run("md5 then ready", func(t *testing.T) {
		oc, conn, err := handshake(t, backendMsgs(t, ok...))
		if err != nil {
			t.Fatal(err)
		}
		if oc.Key.ProcessID != 42 || oc.TxStatus != 'I' || !bytes.Contains(oc.Greeting, []byte("server_version")) {
			t.Fatalf("origin conn %+v", oc)
		}
		if !bytes.Contains(conn.written(), []byte("panswer")) && !bytes.Contains(conn.written(), []byte("answer")) {
			t.Fatal("the client's answer was not relayed to the origin")
		}
	})
	t.Run("origin refuses", func(t *testing.T) {
		_, _, err := handshake(t, backendMsgs(t, &pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01", Message: "no"}))
		var oe *pgwire.OriginError
		if !errors.As(err, &oe) || oe.Response.Code != "28P01" {
			t.Fatalf("got %v, want the origin's 28P01", err)
		}
	})
	t.Run("ready before authentication", func(t *testing.T) {
		if _, _, err := handshake(t, backendMsgs(t, &pgproto3.ReadyForQuery{TxStatus: 'I'})); err == nil {
			t.Fatal("accepted ReadyForQuery before AuthenticationOk")
		}
	})
	t.Run("gss is not relayed", func(t *testing.T) {
		_, _, err := handshake(t, backendMsgs(t, &pgproto3.AuthenticationGSS{}))
		var fe *pgwire.Error
		if !errors.As(err, &fe) || fe.Code != pgwire.CodeFeatureNotSupported {
			t.Fatalf("got %v, want 0A000", err)
		}
	})
}

// FuzzHandshake feeds random origin bytes to the startup handshake: an
// error or a ready connection, never a panic, and never ready without
// AuthenticationOk.
func FuzzHandshake(f *testing.F) {
	f.Add(backendMsgs(f, &pgproto3.AuthenticationOk{}, &pgproto3.ReadyForQuery{TxStatus: 'I'}))
	f.Add(backendMsgs(f, &pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}, &pgproto3.AuthenticationSASLContinue{Data: []byte("r=x")}, &pgproto3.AuthenticationSASLFinal{Data: []byte("v=x")}))
	f.Add(backendMsgs(f, &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: []string{"_pq_.x"}}))
	f.Add([]byte{'R', 0, 0, 0, 8, 0, 0, 0, 0, 'K', 0, 0, 0, 4, 'Z', 0, 0, 0, 5, 'I'})
	f.Fuzz(func(t *testing.T, in []byte) {
		oc, _, err := handshake(t, in)
		if err == nil && !bytes.Contains(in, []byte{'R', 0, 0, 0, 8, 0, 0, 0, 0}) {
			t.Fatalf("ready without AuthenticationOk: %+v", oc)
		}
	})
}
