package integration

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/internal/embedded"
	"github.com/freshetdb/freshet/internal/front"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/materialize"
	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// TestFreshetUpTargetSessionAttrs: an origin URL listing a standby, then
// the primary, with target_session_attrs=read-write, as HA setups
// (Patroni's clients) give it. freshet's own connections follow pgconn;
// the relayed sessions, whose login cannot be retried on another host, go
// to the primary because freshet checks each host's role first, with a
// backend per client and with transaction pooling. After the standby is
// promoted, new sessions go to it, the first host listed; once it turns
// read-only, back to the primary.
func TestFreshetUpTargetSessionAttrs(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	primary := testenv.PostgresURL(t)
	standby := startStandby(ctx, t)
	u, err := url.Parse(primary)
	if err != nil {
		t.Fatal(err)
	}
	primaryAddr := u.Host
	u.Host = standby + "," + u.Host
	q := u.Query()
	q.Set("target_session_attrs", "read-write")
	u.RawQuery = q.Encode()

	t.Run("the check, against the real servers", func(t *testing.T) {
		for _, c := range []struct {
			attrs                string
			onPrimary, onStandby error // nil: fits
		}{
			{"read-write", nil, errAny},
			{"primary", nil, errAny},
			{"standby", errAny, nil},
			{"prefer-standby", postgres.ErrHostNotPreferred, nil},
		} {
			q.Set("target_session_attrs", c.attrs)
			u.RawQuery = q.Encode()
			oc, err := front.OriginDialing(u.String())
			if err != nil || oc.CheckHost == nil {
				t.Fatalf("%s: OriginDialing: %+v, %v", c.attrs, oc, err)
			}
			for _, h := range []struct {
				addr string
				want error
			}{{primaryAddr, c.onPrimary}, {standby, c.onStandby}} {
				if got := oc.CheckHost(ctx, h.addr); !checkIs(got, h.want) {
					t.Errorf("%s: check of %s = %v, want %v", c.attrs, h.addr, got, h.want)
				}
			}
		}
		q.Set("target_session_attrs", "read-write")
		u.RawQuery = q.Encode()
	})

	t.Run("transaction pooling", func(t *testing.T) {
		f := startUpWith(t, []string{"t"}, clientsDDL, materialize.Hooks{}, 5*time.Second, func(_ *upFixture, cfg *embedded.Config) {
			cfg.Origin = u.String()
			cfg.Clients = front.Clients{AuthURL: primary, TransactionPooling: true}
		})
		c := f.connect(ctx)
		for range 3 { // each transaction on a backend of the pool
			if port := serverPort(ctx, t, c); port != portOf(t, primaryAddr) {
				t.Fatalf("a transaction ran on port %d, want the primary's %d", port, portOf(t, primaryAddr))
			}
		}
		if _, err := c.Exec(ctx, "INSERT INTO "+f.table("t")+" VALUES (100, 100)"); err != nil {
			t.Fatalf("a write through freshet: %v", err)
		}
	})

	reg := prometheus.NewRegistry()
	f := startUpWith(t, []string{"t"}, clientsDDL, materialize.Hooks{}, 5*time.Second, func(_ *upFixture, cfg *embedded.Config) {
		cfg.Origin, cfg.Registerer = u.String(), reg
	})
	c := f.connect(ctx)
	if port := serverPort(ctx, t, c); port != portOf(t, primaryAddr) {
		t.Fatalf("the session runs on port %d, want the primary's %d", port, portOf(t, primaryAddr))
	}
	readsAreCached(ctx, t, f, c, 6)
	if _, err := c.Exec(ctx, "INSERT INTO "+f.table("t")+" VALUES (100, 100)"); err != nil {
		t.Fatalf("a write through freshet: %v", err)
	}

	// The failover: the standby is promoted (the old primary stays up,
	// so both now take writes, and the first listed wins).
	sc, err := pgx.Connect(ctx, withHost(primary, standby))
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close(ctx)
	if _, err := sc.Exec(ctx, "SELECT pg_promote(true, 30)"); err != nil {
		t.Fatalf("promote: %v", err)
	}
	newSessionsRunOn(ctx, t, f, standby)
	// And back: the promoted host turns read-only, so it no longer fits.
	for _, q := range []string{"ALTER SYSTEM SET default_transaction_read_only = on", "SELECT pg_reload_conf()"} {
		if _, err := sc.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	newSessionsRunOn(ctx, t, f, primaryAddr)
	for _, m := range []struct {
		name   string
		labels map[string]string
		ok     func(float64) bool
	}{
		{"freshet_origin_host_fits", map[string]string{"host": standby}, func(v float64) bool { return v == 0 }},
		{"freshet_origin_host_fits", map[string]string{"host": primaryAddr}, func(v float64) bool { return v == 1 }},
		{"freshet_origin_host_checks_total", map[string]string{"host": standby, "outcome": "fits"}, func(v float64) bool { return v >= 1 }},
		{"freshet_origin_host_checks_total", map[string]string{"host": standby, "outcome": "refused"}, func(v float64) bool { return v >= 2 }},
	} {
		if v := metricValue(t, reg, m.name, m.labels); !m.ok(v) {
			t.Errorf("%s%v = %v", m.name, m.labels, v)
		}
	}
}

// metricValue is the value of the counter or gauge name with labels in
// reg, or a histogram's number of samples (0 when there is none).
func metricValue(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			n := 0
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok {
					if v != lp.GetValue() {
						continue metrics
					}
					n++
				}
			}
			if n != len(labels) {
				continue
			}
			if g := m.GetGauge(); g != nil {
				return g.GetValue()
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount())
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

// newSessionsRunOn waits until a new session through freshet runs on
// addr; host checks are renewed each second.
func newSessionsRunOn(ctx context.Context, t *testing.T, f *upFixture, addr string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := pgx.Connect(ctx, f.url())
		if err != nil {
			t.Fatal(err)
		}
		port := serverPort(ctx, t, c)
		c.Close(ctx)
		if port == portOf(t, addr) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("new sessions still run on port %d, not %s, after 10 s (host checks are renewed each second)", port, addr)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// errAny stands for any error in the table above.
var errAny = errors.New("any error")

func checkIs(got, want error) bool {
	switch want {
	case nil:
		return got == nil
	case errAny:
		return got != nil && !errors.Is(got, postgres.ErrHostNotPreferred)
	}
	return errors.Is(got, want)
}

func serverPort(ctx context.Context, t *testing.T, c *pgx.Conn) int {
	t.Helper()
	var port int
	if err := c.QueryRow(ctx, "SELECT current_setting('port')::int").Scan(&port); err != nil {
		t.Fatal(err)
	}
	return port
}

func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// startStandby makes a streaming standby of the test cluster with
// pg_basebackup, on a port of its own, and returns its address. It runs as
// the cluster's user (postgres when the tests run as root) and is stopped
// by pid at the end of the test.
func startStandby(ctx context.Context, t *testing.T) string {
	t.Helper()
	bin := testenv.PostgresBinDir(t)
	cred, err := clusterUser()
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "freshet-standby-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	backup := exec.CommandContext(ctx, filepath.Join(bin, "pg_basebackup"), "-d", testenv.PostgresURL(t),
		"-D", data, "-R", "-X", "stream", "-c", "fast", "--no-sync")
	backup.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	if out, err := backup.CombinedOutput(); err != nil {
		t.Fatalf("pg_basebackup: %v\n%s", err, out)
	}
	addr := freePort(t)
	port := strconv.Itoa(portOf(t, addr))
	logf, err := os.Create(filepath.Join(dir, "postgres.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	srv := exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-c", "port="+port,
		"-c", "unix_socket_directories="+dir, "-c", "listen_addresses=127.0.0.1")
	srv.Stdout, srv.Stderr = logf, logf
	srv.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = srv.Process.Signal(syscall.SIGINT) // fast shutdown
		done := make(chan struct{})
		go func() { _ = srv.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = srv.Process.Kill()
			<-done
		}
	})
	standbyURL := withHost(testenv.PostgresURL(t), addr)
	for {
		c, err := pgx.Connect(ctx, standbyURL)
		if err == nil {
			var inRecovery bool
			err = c.QueryRow(ctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
			c.Close(ctx)
			if err == nil && inRecovery {
				return addr
			}
		}
		if ctx.Err() != nil {
			log, _ := os.ReadFile(filepath.Join(dir, "postgres.log"))
			t.Fatalf("the standby did not start: %v\n%s", err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// clusterUser is who the test cluster's files belong to: postgres when
// the tests run as root (as integration/env/postgres.sh runs it), else
// the tests' own user (nil: no change).
func clusterUser() (*syscall.Credential, error) {
	if os.Getuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup("postgres")
	if err != nil {
		return nil, fmt.Errorf("the cluster's user: %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}
