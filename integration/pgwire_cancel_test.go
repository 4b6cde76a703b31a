package integration

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/serve/pgwire"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// TestPgwireCancel cancels a pg_sleep from the client: the CancelRequest
// carries freshet's key, freshet forwards the origin's, and the client
// gets the origin's 57014 on a connection that stays usable.
func TestPgwireCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startProxy(t, pgwire.Config{})
	conn, err := pgx.Connect(ctx, p.url(t, testenv.PostgresURL(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var originPID uint32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&originPID); err != nil {
		t.Fatal(err)
	}
	if originPID == conn.PgConn().PID() {
		t.Fatalf("the client sees the origin's pid %d: BackendKeyData was not replaced", originPID)
	}
	cancelAfter(ctx, t, conn, 300*time.Millisecond)
	start := time.Now()
	_, err = conn.Exec(ctx, "SELECT pg_sleep(20)")
	if got := pgCode(err); got != "57014" {
		t.Fatalf("pg_sleep: got %v (SQLSTATE %q), want 57014 after %v", err, got, time.Since(start))
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("connection unusable after cancel: %v", err)
	}
}

// cancelAfter sends c's CancelRequest after d, as a client cancelling a
// long query does.
func cancelAfter(ctx context.Context, t *testing.T, c *pgx.Conn, d time.Duration) {
	go func() {
		time.Sleep(d)
		if err := c.PgConn().CancelRequest(ctx); err != nil {
			t.Errorf("cancel request: %v", err)
		}
	}()
}

// TestPgwireClientVanishes drops a client in the middle of a long query:
// freshet must cancel it on the origin and close the backend.
func TestPgwireClientVanishes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	p := startProxy(t, pgwire.Config{})
	conn, err := pgx.Connect(ctx, p.url(t, testenv.PostgresURL(t)))
	if err != nil {
		t.Fatal(err)
	}
	var originPID uint32
	if err := conn.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&originPID); err != nil {
		t.Fatal(err)
	}
	// Send the query and drop the socket without a Terminate.
	raw := conn.PgConn().Conn()
	if _, err := raw.Write([]byte("Q\x00\x00\x00\x18SELECT pg_sleep(600)\x00")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	_ = raw.(*net.TCPConn).SetLinger(0)
	_ = raw.Close()

	super, err := pgx.Connect(ctx, testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer super.Close(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var n int
		if err := super.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", originPID).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("origin backend %d still there 10 s after its client vanished", originPID)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestPgwirePeersCancel: two front ends as peers behind one address (a
// TCP load balancer sends each connection to either): a CancelRequest
// that reaches the front end not holding the session is forwarded to the
// one that does, and the query is cancelled on the origin.
func TestPgwirePeersCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lns, peers := make([]net.Listener, 2), map[int]string{}
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i], peers[i+1] = ln, ln.Addr().String()
	}
	regA, regB := prometheus.NewRegistry(), prometheus.NewRegistry()
	a := startProxyOn(t, pgwire.Config{PeerID: 1, Peers: peers, Registerer: regA}, lns[0])
	b := startProxyOn(t, pgwire.Config{PeerID: 2, Peers: peers, Registerer: regB}, lns[1])
	conn, err := pgx.Connect(ctx, b.url(t, testenv.PostgresURL(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	pid, secret := conn.PgConn().PID(), conn.PgConn().SecretKey()
	if peer := pid >> 23; peer != 2 {
		t.Fatalf("process id %#x carries peer %d, want 2", pid, peer)
	}
	cancelled := make(chan struct{})
	go func() {
		defer close(cancelled)
		time.Sleep(300 * time.Millisecond)
		if err := rawCancel(ctx, a.addr, pid, secret); err != nil {
			t.Errorf("cancel request to the other peer: %v", err)
		}
	}()
	start := time.Now()
	_, err = conn.Exec(ctx, "SELECT pg_sleep(20)")
	if got := pgCode(err); got != "57014" {
		t.Fatalf("pg_sleep cancelled through the other peer: got %v (SQLSTATE %q) after %v, want 57014", err, got, time.Since(start))
	}
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil || one != 1 {
		t.Fatalf("connection unusable after cancel: %v", err)
	}
	<-cancelled // the peer closes the client's cancel connection once it forwarded it
	if n := metricValue(t, regA, "freshet_pgwire_cancel_requests_total", map[string]string{"outcome": "peer"}); n != 1 {
		t.Errorf("the peer that got the cancel forwarded %v, want 1", n)
	}
	if n := metricValue(t, regB, "freshet_pgwire_cancel_requests_total", map[string]string{"outcome": "local"}); n != 1 {
		t.Errorf("the peer holding the session cancelled %v, want 1", n)
	}
}

// rawCancel sends a CancelRequest for pid and secret to addr and waits
// for the server to close the connection, as libpq does.
func rawCancel(ctx context.Context, addr string, pid uint32, secret []byte) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	m := binary.BigEndian.AppendUint32(nil, uint32(12+len(secret)))
	m = binary.BigEndian.AppendUint32(m, 80877102)
	m = binary.BigEndian.AppendUint32(m, pid)
	if _, err := c.Write(append(m, secret...)); err != nil {
		return err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err = io.Copy(io.Discard, c)
	return err
}
