package pgwire

import (
	"bytes"
	"context"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func startupMsg(params map[string]string) []byte {
	b, _ := (&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: params}).Encode(nil)
	return b
}

// runStartup feeds input to the startup phase of a server whose origin
// asks for an md5 password and accepts only "md5ok".
func runStartup(t testing.TB, input []byte) (*session, []byte, error) {
	t.Helper()
	srv, err := New(Config{Connector: &fakeConnector{md5: true}})
	if err != nil {
		t.Fatal(err)
	}
	c := newScriptConn(input, false)
	sess, err := srv.startup(context.Background(), c)
	if sess != nil {
		sess.release()
	}
	return sess, c.written(), err
}

func TestStartup(t *testing.T) {
	user := startupMsg(map[string]string{"user": "u", "database": "d"})
	tests := []struct {
		name     string
		input    []byte
		wantSess bool
		wantCode string
		wantOut  []byte // prefix of what the client receives
	}{
		{name: "password accepted", input: cat(user, msg('p', "md5ok\x00")), wantSess: true, wantOut: []byte{'R'}},
		{name: "wrong password gets the origin's error", input: cat(user, msg('p', "nope\x00")), wantCode: "28P01"},
		{name: "query instead of password", input: cat(user, msg('Q', "select 1\x00")), wantCode: CodeProtocolViolation},
		{name: "oversized password message", input: cat(user, msg('p', string(bytes.Repeat([]byte("a"), 70000)))), wantCode: CodeProtocolViolation},
		{name: "SSLRequest without TLS configured", input: cat([]byte{0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f}, user, msg('p', "md5ok\x00")), wantSess: true, wantOut: []byte{'N', 'R'}},
		{name: "GSSENCRequest", input: cat([]byte{0, 0, 0, 8, 4, 0xd2, 0x16, 0x30}, user, msg('p', "md5ok\x00")), wantSess: true, wantOut: []byte{'N', 'R'}},
		{name: "unknown cancel key", input: []byte{0, 0, 0, 16, 4, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2}},
		{name: "no user", input: startupMsg(map[string]string{"database": "d"}), wantCode: CodeInvalidAuthorization},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sess, out, err := runStartup(t, tt.input)
			if (sess != nil) != tt.wantSess {
				t.Fatalf("session %v, want %v (err %v)", sess != nil, tt.wantSess, err)
			}
			if tt.wantOut != nil && !bytes.HasPrefix(out, tt.wantOut) {
				t.Fatalf("client got %q, want prefix %q", out, tt.wantOut)
			}
			if tt.wantCode != "" {
				if got := lastErrorCode(t, out[bytes.IndexByte(out, 'E'):]); got != tt.wantCode {
					t.Fatalf("client got SQLSTATE %q, want %q (%v)", got, tt.wantCode, err)
				}
			}
		})
	}
}

func TestCancelRoutesToOriginBackend(t *testing.T) {
	fc := &fakeConnector{}
	srv, err := New(Config{Connector: fc})
	if err != nil {
		t.Fatal(err)
	}
	origin, _ := fc.Connect(context.Background(), nil, nil)
	sess := newSession(srv, newScriptConn(nil, false), nil, origin, &pgproto3.StartupMessage{Parameters: map[string]string{"user": "u"}})
	defer sess.release()
	key := sess.keyData()
	wrong := append([]byte{0, 0, 0, 16, 4, 0xd2, 0x16, 0x2e}, key[5:9]...)
	wrong = append(wrong, key[9]^1, key[10], key[11], key[12])
	if _, _, err := runStartupOn(srv, wrong); err != nil {
		t.Fatal(err)
	}
	if fc.cancels != 0 {
		t.Fatal("a cancel with a wrong secret reached the origin")
	}
	right := append([]byte{0, 0, 0, 16, 4, 0xd2, 0x16, 0x2e}, key[5:13]...)
	if _, _, err := runStartupOn(srv, right); err != nil {
		t.Fatal(err)
	}
	if fc.cancels != 1 {
		t.Fatalf("cancels = %d, want 1", fc.cancels)
	}
}

func runStartupOn(srv *Server, input []byte) (*session, []byte, error) {
	c := newScriptConn(input, false)
	sess, err := srv.startup(context.Background(), c)
	return sess, c.written(), err
}

// FuzzStartup drives the startup phase with random bytes: never a panic,
// and never a session for a client that did not give the password.
func FuzzStartup(f *testing.F) {
	user := startupMsg(map[string]string{"user": "u", "database": "d"})
	f.Add(cat(user, msg('p', "md5ok\x00")))
	f.Add(cat([]byte{0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f}, user, msg('p', "x\x00")))
	f.Add(cat([]byte{0, 0, 0, 8, 4, 0xd2, 0x16, 0x30}, user))
	f.Add([]byte{0, 0, 0, 16, 4, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2})
	f.Add([]byte{0, 0, 0, 8, 0, 3, 0, 2})
	f.Add([]byte{0, 0, 0, 16, 4, 0xd2, 0x17, 0x0c, 0, 0, 0, 1, 0, 0, 0, 2}) // a peer's forwarded cancel
	f.Add([]byte{0, 0, 0, 8, 4, 0xd2, 0x17, 0x0c})                          // one too short
	f.Fuzz(func(t *testing.T, input []byte) {
		sess, _, _ := runStartup(t, input)
		if sess != nil && !bytes.Contains(input, []byte("md5ok")) {
			t.Fatal("a session started without the password")
		}
	})
}

// TestStartupMetrics: each connection's startup is counted by how it
// ended, and connected sessions show in the clients gauge.
func TestStartupMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv, err := New(Config{Connector: &fakeConnector{md5: true}, Registerer: reg, MaxClientConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	user := startupMsg(map[string]string{"user": "u", "database": "d"})
	ok, _, _ := runStartupOn(srv, cat(user, msg('p', "md5ok\x00")))
	if ok == nil {
		t.Fatal("no session for the right password")
	}
	if got := gaugeValue(t, reg, "freshet_pgwire_clients"); got != 1 {
		t.Fatalf("clients = %v with one session, want 1", got)
	}
	runStartupOn(srv, cat(user, msg('p', "md5ok\x00"))) // over MaxClientConns
	ok.release()
	srv.clients.Add(-1)                                                                 // as serveConn does when the session ends
	runStartupOn(srv, cat(user, msg('p', "nope\x00")))                                  // the origin's 28P01
	runStartupOn(srv, cat(user, msg('Q', "select 1\x00")))                              // not a password
	runStartupOn(srv, []byte{0, 0, 0, 16, 4, 0xd2, 0x16, 0x2e, 0, 0, 0, 1, 0, 0, 0, 2}) // a cancel
	runStartupOn(srv, user[:5])                                                         // the client left
	for result, want := range map[string]float64{"ok": 1, "too_many_clients": 1, "auth_failed": 1,
		"protocol_violation": 1, "cancel": 1, "client_gone": 1} {
		if got := testutil.ToFloat64(srv.metrics.startups.WithLabelValues(result)); got != want {
			t.Errorf("startups{result=%q} = %v, want %v", result, got, want)
		}
	}
	if got := gaugeValue(t, reg, "freshet_pgwire_clients"); got != 0 {
		t.Fatalf("clients = %v after the session ended, want 0", got)
	}
}

// gaugeValue is the value of the gauge registered on reg under name.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}
