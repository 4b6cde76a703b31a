package ingestnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/internal/testenv"
)

func TestTransientSetupError(t *testing.T) {
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", fmt.Errorf("%w: connect: %w", postgres.ErrSetup, refused), true},
		{"starting up", &pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}, true},
		{"too many connections", fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: "53300"}), true},
		{"connection exception class", &pgconn.PgError{Code: "08006"}, true},
		{"wrong password", fmt.Errorf("%w: connect: %w", postgres.ErrSetup, &pgconn.PgError{Code: "28P01"}), false},
		{"wal_level too low", fmt.Errorf("%w: wal_level is replica", postgres.ErrSetup), false},
		{"insufficient privilege", &pgconn.PgError{Code: "42501"}, false},
		{"plain error", errors.New("boom"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := transientSetupError(tt.err); got != tt.want {
				t.Fatalf("transientSetupError(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

// TestRunWaitsForTheOrigin: an ingest started before its origin accepts
// connections keeps trying, says why in its status, and sets up and
// streams once the origin is there.
func TestRunWaitsForTheOrigin(t *testing.T) {
	origin, brokers := testenv.PostgresURL(t), testenv.KafkaBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	name := testenv.UniqueName("ingwait")
	super := sourceTable(ctx, t, origin, name)

	// A port nothing listens on yet; later a relay to the origin.
	hold, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := hold.Addr().String()
	_ = hold.Close()
	u, _ := url.Parse(origin)
	originAddr := u.Host
	u.Host = addr

	n, err := New(Config{Source: u.String(), Brokers: brokers, Topic: name, Slot: name + "_slot", Publication: name + "_pub",
		Tables: []string{"public." + name}, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- n.Run(runCtx) }()
	ended := make(chan error, 1)
	defer func() {
		stop()
		select {
		case <-ran:
		case <-ended:
		}
		testenv.DropSource(super, name+"_slot", name+"_pub", name)
		super.Close(context.Background())
	}()
	running := func(ok func() bool) func() bool {
		return func() bool {
			select {
			case err := <-ran:
				ended <- err
				t.Fatalf("Run ended: %v", err)
			default:
			}
			return ok()
		}
	}

	waitFor(ctx, t, "setup retries while the origin is away", running(func() bool { return n.Status().SetupRetries >= 3 }))
	if s := n.Status(); !strings.Contains(s.LastError, "setup") || s.KafkaUp {
		t.Fatalf("status while the origin is away: %+v", s)
	}
	relay := startRelay(t, addr, originAddr)
	defer relay.close()
	waitFor(ctx, t, "the ingest to stream", running(func() bool { return n.Status().KafkaUp }))
	if _, err := super.Exec(ctx, "INSERT INTO "+name+" VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	waitFor(ctx, t, "the insert to be durable in Kafka", running(func() bool { return !n.Durable().IsZero() }))
	if s := n.Status(); s.LastError != "" {
		t.Fatalf("status after setup: %+v", s)
	}
}

// TestRunRefusesAWrongPassword: an error that waiting cannot cure ends
// Run at once.
func TestRunRefusesAWrongPassword(t *testing.T) {
	origin, brokers := testenv.PostgresURL(t), testenv.KafkaBrokers(t)
	u, _ := url.Parse(origin)
	u.User = url.UserPassword(u.User.Username(), "not-the-password")
	n, err := New(Config{Source: u.String(), Brokers: brokers, Slot: "never_made", MinBackoff: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = n.Run(ctx)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "28P01" || ctx.Err() != nil {
		t.Fatalf("Run = %v (ctx %v), want 28P01 at once", err, ctx.Err())
	}
	if r := n.Status().SetupRetries; r != 0 {
		t.Fatalf("%d setup retries of a wrong password", r)
	}
}

func sourceTable(ctx context.Context, t *testing.T, origin, name string) *pgx.Conn {
	t.Helper()
	super, err := pgx.Connect(ctx, origin)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := super.Exec(ctx, "CREATE TABLE "+name+" (id int PRIMARY KEY)"); err != nil {
		t.Fatal(err)
	}
	return super
}

func waitFor(ctx context.Context, t *testing.T, what string, ok func() bool) {
	t.Helper()
	for !ok() {
		if ctx.Err() != nil {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// relay forwards connections on one address to another: the origin
// "coming up" on the address the ingest was given.
type relay struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []net.Conn
	wg    sync.WaitGroup
}

func startRelay(t *testing.T, listen, to string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		t.Fatal(err)
	}
	r := &relay{ln: ln}
	r.wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o, err := net.Dial("tcp", to)
			if err != nil {
				_ = c.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, c, o)
			r.mu.Unlock()
			r.wg.Go(func() { _, _ = io.Copy(o, c); _ = o.Close() })
			r.wg.Go(func() { _, _ = io.Copy(c, o); _ = c.Close() })
		}
	})
	return r
}

func (r *relay) close() {
	_ = r.ln.Close()
	r.mu.Lock()
	for _, c := range r.conns {
		_ = c.Close()
	}
	r.mu.Unlock()
	r.wg.Wait()
}
