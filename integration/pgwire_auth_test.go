package integration

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/serve/pgwire"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// authRole makes the role the test environment's pg_hba.conf reserves for
// an auth method (md5, trust, password) log-in capable with a fresh
// password and returns a URL for it.
func authRole(ctx context.Context, t *testing.T, method string) string {
	t.Helper()
	super := testenv.PostgresURL(t)
	conn, err := pgx.Connect(ctx, super)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	role := "freshet_auth_" + method
	pw := testenv.UniqueName("pw")
	enc := "scram-sha-256"
	if method == "md5" {
		enc = "md5"
	}
	// Roles are cluster-wide and these names fixed: serialise with a lock.
	for _, sql := range []string{
		`SELECT pg_advisory_lock(4242)`,
		`SET password_encryption = '` + enc + `'`,
		`DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '` + role + `') THEN CREATE ROLE ` + role + ` LOGIN; END IF; END $$`,
		`ALTER ROLE ` + role + ` PASSWORD '` + pw + `'`,
		`GRANT ALL ON SCHEMA public TO ` + role,
		`SELECT pg_advisory_unlock(4242)`,
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	u, _ := url.Parse(super)
	u.User = url.UserPassword(role, pw)
	return u.String()
}

func withPassword(raw, pw string) string {
	u, _ := url.Parse(raw)
	u.User = url.UserPassword(u.User.Username(), pw)
	return u.String()
}

func pgCode(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		return pgErr.Code
	}
	return ""
}

// TestPgwireAuthMethods relays each origin auth method: the right
// password logs in through freshet, a wrong one gets the origin's 28P01.
func TestPgwireAuthMethods(t *testing.T) {
	ca := newTestCA(t)
	p := startProxy(t, pgwire.Config{TLS: ca.server})
	tests := []struct {
		name    string
		url     func(ctx context.Context, t *testing.T) string
		sslmode string
		wrongPW bool // a wrong password is refused (trust takes anything)
	}{
		{name: "scram-sha-256", url: func(_ context.Context, t *testing.T) string { return testenv.PostgresReplURL(t) }, sslmode: "disable", wrongPW: true},
		{name: "scram-sha-256 over tls", url: func(_ context.Context, t *testing.T) string { return testenv.PostgresReplURL(t) }, sslmode: "require", wrongPW: true},
		{name: "md5", url: func(ctx context.Context, t *testing.T) string { return authRole(ctx, t, "md5") }, sslmode: "disable", wrongPW: true},
		{name: "trust", url: func(ctx context.Context, t *testing.T) string { return authRole(ctx, t, "trust") }, sslmode: "disable"},
		{name: "cleartext over tls", url: func(ctx context.Context, t *testing.T) string { return authRole(ctx, t, "password") }, sslmode: "require", wrongPW: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			good := withSSLMode(t, p.url(t, tt.url(ctx, t)), tt.sslmode)
			conn, err := pgx.Connect(ctx, good)
			if err != nil {
				t.Fatalf("right password refused: %v", err)
			}
			var user string
			if err := conn.QueryRow(ctx, "SELECT current_user").Scan(&user); err != nil {
				t.Fatal(err)
			}
			_ = conn.Close(ctx)
			if !tt.wrongPW {
				return
			}
			_, err = pgx.Connect(ctx, withPassword(good, "wrong-password"))
			if got := pgCode(err); got != "28P01" {
				t.Fatalf("wrong password: got %v (SQLSTATE %q), want 28P01", err, got)
			}
		})
	}
}

// TestPgwireCleartextNeedsTLS: freshet does not relay a cleartext password
// request to a client that is not on TLS.
func TestPgwireCleartextNeedsTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startProxy(t, pgwire.Config{TLS: newTestCA(t).server})
	_, err := pgx.Connect(ctx, withSSLMode(t, p.url(t, authRole(ctx, t, "password")), "disable"))
	if got := pgCode(err); got != pgwire.CodeInvalidAuthorization {
		t.Fatalf("got %v (SQLSTATE %q), want 28000", err, got)
	}
}

// TestPgwireNothingBeforeAuth pipelines an INSERT right behind the last
// SCRAM message: with a wrong password it must never reach the origin,
// with the right one it must (the control).
func TestPgwireNothingBeforeAuth(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startProxy(t, pgwire.Config{})
	super, err := pgx.Connect(ctx, testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer super.Close(ctx)
	canary := testenv.UniqueName("canary")
	if _, err := super.Exec(ctx, "CREATE TABLE "+canary+" (v text); GRANT ALL ON "+canary+" TO freshet_repl"); err != nil {
		t.Fatal(err)
	}
	defer func() { _, _ = super.Exec(context.Background(), "DROP TABLE "+canary) }()
	repl, _ := url.Parse(testenv.PostgresReplURL(t))
	pw, _ := repl.User.Password()
	insert := "INSERT INTO " + canary + " VALUES ('got through')"

	got := rawSCRAMSession(ctx, t, p.addr, repl.User.Username(), strings.TrimPrefix(repl.Path, "/"), "wrong-"+pw, insert)
	if !strings.Contains(got, "28P01") {
		t.Fatalf("wrong password: want 28P01, got %s", got)
	}
	var n int
	if err := super.QueryRow(ctx, "SELECT count(*) FROM "+canary).Scan(&n); err != nil || n != 0 {
		t.Fatalf("after a wrong password the canary holds %d rows (%v): a query reached the origin", n, err)
	}
	got = rawSCRAMSession(ctx, t, p.addr, repl.User.Username(), strings.TrimPrefix(repl.Path, "/"), pw, insert)
	if !strings.Contains(got, "INSERT 0 1") {
		t.Fatalf("right password: want INSERT 0 1, got %s", got)
	}
	if err := super.QueryRow(ctx, "SELECT count(*) FROM "+canary).Scan(&n); err != nil || n != 1 {
		t.Fatalf("control: the canary holds %d rows (%v), want 1", n, err)
	}
}

// rawSCRAMSession authenticates with SCRAM-SHA-256 by hand and sends query
// in the same write as the final SCRAM message. It returns a summary of
// every message received until the connection ends or goes idle.
func rawSCRAMSession(ctx context.Context, t *testing.T, addr, user, db, password, query string) string {
	t.Helper()
	conn, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	fe := pgproto3.NewFrontend(conn, conn)
	fe.Send(&pgproto3.StartupMessage{ProtocolVersion: pgproto3.ProtocolVersion30, Parameters: map[string]string{"user": user, "database": db}})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, ok := mustReceive(t, fe).(*pgproto3.AuthenticationSASL); !ok {
		t.Fatal("expected AuthenticationSASL")
	}
	clientNonce := "freshettestnonce0123456789"
	clientFirstBare := "n=,r=" + clientNonce
	fe.Send(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,," + clientFirstBare)})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	cont, ok := mustReceive(t, fe).(*pgproto3.AuthenticationSASLContinue)
	if !ok {
		t.Fatal("expected AuthenticationSASLContinue")
	}
	final := scramClientFinal(t, clientFirstBare, string(cont.Data), password)
	fe.Send(&pgproto3.SASLResponse{Data: []byte(final)})
	fe.Send(&pgproto3.Query{String: query})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var seen []string
	zs := 0
	for {
		msg, err := fe.Receive()
		if err != nil {
			return strings.Join(seen, " ")
		}
		switch m := msg.(type) {
		case *pgproto3.ErrorResponse:
			seen = append(seen, "E:"+m.Code)
		case *pgproto3.CommandComplete:
			seen = append(seen, string(m.CommandTag))
		case *pgproto3.ReadyForQuery:
			seen = append(seen, "Z")
			if zs++; zs == 2 { // the greeting's, then the query's
				return strings.Join(seen, " ")
			}
		default:
			seen = append(seen, fmt.Sprintf("%T", m))
		}
	}
}

func mustReceive(t *testing.T, fe *pgproto3.Frontend) pgproto3.BackendMessage {
	t.Helper()
	msg, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if e, ok := msg.(*pgproto3.ErrorResponse); ok {
		t.Fatalf("server error %s: %s", e.Code, e.Message)
	}
	return msg
}

// scramClientFinal computes the client-final-message (RFC 5802) for
// password, without channel binding.
func scramClientFinal(t *testing.T, clientFirstBare, serverFirst, password string) string {
	t.Helper()
	var nonce, salt string
	iter := 0
	for _, kv := range strings.Split(serverFirst, ",") {
		switch {
		case strings.HasPrefix(kv, "r="):
			nonce = kv[2:]
		case strings.HasPrefix(kv, "s="):
			salt = kv[2:]
		case strings.HasPrefix(kv, "i="):
			iter, _ = strconv.Atoi(kv[2:])
		}
	}
	rawSalt, err := base64.StdEncoding.DecodeString(salt)
	if err != nil || iter == 0 || nonce == "" {
		t.Fatalf("bad server-first-message %q", serverFirst)
	}
	salted, err := pbkdf2.Key(sha256.New, password, rawSalt, iter, 32)
	if err != nil {
		t.Fatal(err)
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	withoutProof := "c=biws,r=" + nonce
	authMessage := clientFirstBare + "," + serverFirst + "," + withoutProof
	sig := hmacSHA256(storedKey[:], authMessage)
	proof := make([]byte, len(clientKey))
	for i := range proof {
		proof[i] = clientKey[i] ^ sig[i]
	}
	return withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof)
}

func hmacSHA256(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

// TestPgwireTLS connects with sslmode=require and verify-full against the
// test CA, and checks that a client trusting another CA is refused.
func TestPgwireTLS(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ca := newTestCA(t)
	p := startProxy(t, pgwire.Config{TLS: ca.server, RequireTLS: true})
	base := p.url(t, testenv.PostgresURL(t))
	for _, tt := range []struct{ name, url string }{
		{"require", withSSLMode(t, base, "require")},
		{"verify-full", withSSLMode(t, base, "verify-full") + "&sslrootcert=" + url.QueryEscape(ca.caFile)},
		// libpq 17's TLS without an SSLRequest first, ALPN "postgresql".
		{"direct", withSSLMode(t, base, "require") + "&sslnegotiation=direct"},
		{"direct, verify-full", withSSLMode(t, base, "verify-full") + "&sslrootcert=" + url.QueryEscape(ca.caFile) + "&sslnegotiation=direct"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, err := pgx.Connect(ctx, tt.url)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close(ctx)
			if _, ok := conn.PgConn().Conn().(*tls.Conn); !ok {
				t.Fatalf("connection is %T, not TLS", conn.PgConn().Conn())
			}
			var one int
			if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
				t.Fatalf("query over TLS: %d %v", one, err)
			}
		})
	}
	t.Run("a cancel over direct TLS", func(t *testing.T) {
		conn, err := pgx.Connect(ctx, withSSLMode(t, base, "require")+"&sslnegotiation=direct")
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(ctx)
		go func() {
			time.Sleep(300 * time.Millisecond)
			_ = conn.PgConn().CancelRequest(ctx) // over direct TLS too, as pgx does
		}()
		start := time.Now()
		_, err = conn.Exec(ctx, "SELECT pg_sleep(20)")
		if got := pgCode(err); got != "57014" || time.Since(start) > 10*time.Second {
			t.Fatalf("pg_sleep cancelled over direct TLS: %v after %v, want 57014", err, time.Since(start))
		}
	})
	t.Run("direct without ALPN refused", func(t *testing.T) {
		tc := tls.Client(dialRaw(t, p.addr), &tls.Config{InsecureSkipVerify: true}) //nolint:gosec // checks the ALPN rule, not the certificate
		if err := tc.HandshakeContext(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := tc.Write(startupBytes(t, "freshet_super")); err != nil {
			t.Fatal(err)
		}
		m, err := pgproto3.NewFrontend(tc, tc).Receive()
		if e, ok := m.(*pgproto3.ErrorResponse); !ok || e.Code != pgwire.CodeProtocolViolation || !strings.Contains(e.Message, "ALPN") {
			t.Fatalf("want a FATAL 08P01 about ALPN, got %#v, %v", m, err)
		}
	})
	t.Run("verify-full with another CA", func(t *testing.T) {
		other := newTestCA(t)
		_, err := pgx.Connect(ctx, withSSLMode(t, base, "verify-full")+"&sslrootcert="+url.QueryEscape(other.caFile))
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Fatalf("want a certificate verification error, got %v", err)
		}
	})
	t.Run("plaintext refused", func(t *testing.T) {
		_, err := pgx.Connect(ctx, withSSLMode(t, base, "disable"))
		if got := pgCode(err); got != pgwire.CodeInvalidAuthorization {
			t.Fatalf("got %v, want 28000", err)
		}
	})
}
