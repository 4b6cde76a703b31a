package pgwire

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// Startup packet codes (the first 4 bytes after the length).
const (
	codeSSLRequest    = 80877103
	codeGSSENCRequest = 80877104
	codeCancelRequest = 80877102
	// A startup packet longer than this is hostile (PostgreSQL's limit).
	maxStartupPacket = 10000
)

// readStartupPacket reads one length-prefixed startup packet byte for byte:
// nothing past it is consumed, so bytes a client sends after an
// SSLRequest are left for the TLS handshake to reject.
func readStartupPacket(r io.Reader) (code uint32, body []byte, err error) {
	var hdr [8]byte
	if _, err := io.ReadFull(r, hdr[:4]); err != nil {
		return 0, nil, err
	}
	n := int(int32(binary.BigEndian.Uint32(hdr[:4])))
	if n < 8 || n > maxStartupPacket {
		return 0, nil, fatalf(CodeProtocolViolation, nil, "invalid length of startup packet: %d", n)
	}
	body = make([]byte, n-4)
	if _, err := io.ReadFull(r, body); err != nil {
		return 0, nil, fmt.Errorf("read startup packet: %w", err)
	}
	return binary.BigEndian.Uint32(body), body, nil
}

// startup runs the startup phase: TLS and GSS negotiation, a cancel, or a
// StartupMessage followed by the relayed authentication. It returns a
// session ready to relay, or nil for a handled CancelRequest.
func (s *Server) startup(ctx context.Context, raw net.Conn) (sess *session, err error) {
	defer func() { s.metrics.startup(sess, err) }()
	deadline := time.Now().Add(s.cfg.StartupTimeout)
	_ = raw.SetDeadline(deadline)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()

	conn, startup, err := s.negotiate(ctx, raw)
	if err != nil || startup == nil {
		return nil, err
	}
	_, isTLS := conn.(*tls.Conn)
	fail := func(err error) (*session, error) {
		_, _ = conn.Write(encodeError(nil, err))
		return nil, err
	}
	if s.cfg.RequireTLS && !isTLS {
		return fail(fatalf(CodeInvalidAuthorization, nil, "freshet requires TLS (sslmode=require)"))
	}
	if startup.Parameters["user"] == "" {
		return fail(fatalf(CodeInvalidAuthorization, nil, "no PostgreSQL user name specified in startup packet"))
	}
	if n := s.clients.Add(1); n > int64(s.cfg.MaxClientConns) {
		s.clients.Add(-1)
		return fail(fatalf(CodeTooManyConnections, nil, "sorry, too many clients already (freshet max_client_conns %d)", s.cfg.MaxClientConns))
	}
	sess, err = s.authenticate(ctx, conn, startup, isTLS)
	if err != nil {
		s.clients.Add(-1)
		return fail(err)
	}
	_ = raw.SetDeadline(time.Time{})
	return sess, nil
}

// negotiate reads startup packets until a StartupMessage, answering
// SSLRequest and GSSENCRequest. It returns the connection to continue on
// (a *tls.Conn after an upgrade) and a nil StartupMessage for a cancel.
func (s *Server) negotiate(ctx context.Context, raw net.Conn) (net.Conn, *pgproto3.StartupMessage, error) {
	var conn net.Conn = raw
	var first [1]byte
	if _, err := io.ReadFull(raw, first[:]); err != nil {
		return nil, nil, err
	}
	var r io.Reader = io.MultiReader(bytes.NewReader(first[:]), raw) // the first packet's
	if first[0] == tlsHandshakeRecord {
		tc, err := s.directTLS(ctx, raw, first[0])
		if err != nil {
			return nil, nil, err
		}
		conn, r = tc, tc
	}
	for ; ; r = conn {
		code, body, err := readStartupPacket(r)
		if err != nil {
			return nil, nil, err
		}
		switch code {
		case codeSSLRequest:
			if _, ok := conn.(*tls.Conn); ok {
				return nil, nil, fatalf(CodeProtocolViolation, nil, "SSLRequest inside TLS")
			}
			if s.tls == nil {
				if _, err := conn.Write([]byte{'N'}); err != nil {
					return nil, nil, err
				}
				continue
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				return nil, nil, err
			}
			tc := tls.Server(raw, s.tls)
			if err := tc.HandshakeContext(ctx); err != nil {
				return nil, nil, fmt.Errorf("tls handshake: %w", err)
			}
			conn = tc
		case codeGSSENCRequest:
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return nil, nil, err
			}
		case codeCancelRequest:
			var req pgproto3.CancelRequest
			if err := req.Decode(body); err != nil {
				return nil, nil, fmt.Errorf("cancel request: %w", err)
			}
			s.cancel(ctx, req.ProcessID, req.SecretKey)
			return nil, nil, nil
		case codePeerCancel:
			if len(body) < 12 {
				return nil, nil, fatalf(CodeProtocolViolation, nil, "malformed forwarded cancel request")
			}
			s.cancelLocal(ctx, binary.BigEndian.Uint32(body[4:]), body[8:])
			return nil, nil, nil
		default:
			var m pgproto3.StartupMessage
			if err := m.Decode(body); err != nil {
				err = fatalf(CodeProtocolViolation, err, "unsupported frontend protocol or malformed startup packet")
				_, _ = conn.Write(encodeError(nil, err))
				return nil, nil, err
			}
			return conn, &m, nil
		}
	}
}

// authenticate opens the client's origin backend through the Connector,
// relaying the origin's authentication, and greets the client.
func (s *Server) authenticate(ctx context.Context, conn net.Conn, startup *pgproto3.StartupMessage, isTLS bool) (*session, error) {
	rd := &clientReader{conn: conn}
	br := bufio.NewReaderSize(rd, s.cfg.BufferSize)
	ca := &clientAuth{conn: conn, r: br, tls: isTLS, max: s.cfg.MaxMessageSize}
	var origin *OriginConn
	var err error
	var authOK []byte
	var tx *txState
	if s.cfg.Verifiers != nil {
		origin, tx, err = s.openVerified(ctx, ca, startup)
		authOK = []byte{'R', 0, 0, 0, 8, 0, 0, 0, 0}
	} else {
		origin, err = s.cfg.Connector.Connect(ctx, startup, ca)
	}
	if err != nil {
		var fe *Error
		var oe *OriginError
		if !errors.As(err, &fe) && !errors.As(err, &oe) {
			err = fatalf(CodeConnectionFailure, err, "freshet: could not connect to origin")
		}
		return nil, err
	}
	sess := newSession(s, conn, br, origin, startup)
	rd.s = sess
	greeting := append(authOK, origin.Greeting...)
	if tx != nil {
		// The greeting's backend, if it took one, goes straight back to
		// the pool.
		sess.tx, sess.released = tx, true
		if origin.Conn != nil {
			s.cfg.Pool.Release(ctx, sess.poolKey, origin, false)
		}
	}
	greeting = append(greeting, sess.keyData()...)
	greeting = append(greeting, 'Z', 0, 0, 0, 5, origin.TxStatus)
	if _, err := conn.Write(greeting); err != nil {
		sess.release()
		return nil, err
	}
	return sess, nil
}

// openVerified authenticates the client against its role's SCRAM verifier
// and opens (or, with a Pool, reuses) a backend with the recovered key.
func (s *Server) openVerified(ctx context.Context, ca *clientAuth, startup *pgproto3.StartupMessage) (*OriginConn, *txState, error) {
	if err := negotiateDown(ca, startup); err != nil {
		return nil, nil, err
	}
	user := startup.Parameters["user"]
	secret, err := s.cfg.Verifiers.LookupVerifier(ctx, user)
	if err != nil {
		return nil, nil, fatalf(CodeConnectionFailure, err, "freshet: could not look up the credentials of %q", user)
	}
	v, perr := ParseSCRAMVerifier(secret)
	if perr != nil {
		// Same exchange, certain failure: a client learns nothing.
		v = mockVerifier()
	}
	clientKey, err := ca.scram(v, user)
	if err != nil {
		return nil, nil, err
	}
	auth := &scramKeyAuth{user: user, clientKey: clientKey, serverKey: v.ServerKey}
	var tx *txState
	if s.cfg.Mode == TransactionMode {
		tx = &txState{startup: startup, auth: *auth}
	}
	dial := func() (*OriginConn, error) { return s.cfg.Connector.Connect(ctx, startup, auth) }
	if s.cfg.Pool == nil {
		oc, err := dial()
		return oc, tx, err
	}
	key := poolKey(startup.Parameters)
	if greeting, ok := s.greetings.load(key); ok && tx != nil {
		// Greeted as the last backend opened for these parameters was;
		// the session takes a backend for its first transaction.
		return &OriginConn{Greeting: greeting, TxStatus: 'I'}, tx, nil
	}
	waits, done := s.stoppable(ctx, func() (<-chan struct{}, func()) {
		gone := make(chan struct{})
		return gone, watchClient(ca.conn, func() { close(gone) })
	})
	defer done()
	oc, err := s.acquire(waits, key, dial)
	return oc, tx, err
}

// negotiateDown answers a client asking for protocol 3.2 or for _pq_
// options with NegotiateProtocolVersion (3.0, none recognised), as
// PostgreSQL 15 does, and rewrites startup to what backends are opened
// (and pooled) with. In relay mode the origin negotiates itself.
func negotiateDown(ca *clientAuth, startup *pgproto3.StartupMessage) error {
	var unrecognized []string
	for k := range startup.Parameters {
		if strings.HasPrefix(k, "_pq_.") {
			unrecognized = append(unrecognized, k)
			delete(startup.Parameters, k)
		}
	}
	if startup.ProtocolVersion == pgproto3.ProtocolVersion30 && unrecognized == nil {
		return nil
	}
	sort.Strings(unrecognized)
	startup.ProtocolVersion = pgproto3.ProtocolVersion30
	return ca.send(&pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unrecognized})
}
