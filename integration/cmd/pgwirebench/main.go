// Command pgwirebench measures freshet's PostgreSQL front end in
// pass-through against PostgreSQL directly and against PgBouncer (session
// mode), with pgbench -S -M prepared, in one run on one machine.
//
// It runs inside the test environment (make bench-pgwire):
//
//	integration/env/freshet-env run --only pg -- go run ./integration/cmd/pgwirebench
//
// PgBouncer must be installed (integration/env/pgwire-bench.sh sees to it).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"os/user"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/internal/front"
	"github.com/freshetdb/freshet/serve/pgwire"
	"github.com/jackc/pgx/v5"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pgwirebench:", err)
		os.Exit(1)
	}
}

type options struct {
	only       string
	cpuprofile string
	clients    int
	// threads are the pgbench -j values each target is measured at:
	// the thread count changes the ratios on a small machine (the client
	// shares it), so every target runs at each and is compared at its
	// best as well as per -j.
	threads  []int
	duration time.Duration
	scale    int
	rounds   int
	mode     string
	cached   bool
}

func run() error {
	var o options
	flag.IntVar(&o.clients, "c", 8, "pgbench clients")
	flag.Func("j", "comma-separated pgbench thread counts (-j) to measure every target at (default 1,2)", func(v string) error {
		for _, part := range strings.Split(v, ",") {
			j, err := strconv.Atoi(strings.TrimSpace(part))
			if err != nil || j < 1 {
				return fmt.Errorf("bad -j %q", part)
			}
			o.threads = append(o.threads, j)
		}
		return nil
	})
	flag.DurationVar(&o.duration, "T", 20*time.Second, "duration of each pgbench run")
	flag.IntVar(&o.scale, "s", 10, "pgbench scale")
	flag.IntVar(&o.rounds, "rounds", 2, "rounds; each round runs every target once, in rotating order")
	flag.StringVar(&o.mode, "M", "prepared", "pgbench query mode")
	flag.BoolVar(&o.cached, "cached", false, "add freshet with the materializer (warm cache), 1-client p50 latency, a 1M-row aggregate and freshness")
	flag.StringVar(&o.only, "only", "", "run only the targets whose name contains one of these comma-separated strings")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "write a CPU profile of this process (freshet's front end) to this file")
	flag.Parse()
	if len(o.threads) == 0 {
		o.threads = []int{1, 2}
	}
	ctx := context.Background()

	super := os.Getenv("FRESHET_TEST_PG_URL")
	bindir := os.Getenv("FRESHET_TEST_PG_BINDIR")
	if super == "" || bindir == "" {
		return errors.New("FRESHET_TEST_PG_URL and FRESHET_TEST_PG_BINDIR must be set (run inside integration/env/freshet-env)")
	}
	dbURL, drop, err := createDB(ctx, super)
	if err != nil {
		return err
	}
	defer drop()
	fmt.Printf("pgbench -i -s %d ...\n", o.scale)
	if out, err := exec.Command(filepath.Join(bindir, "pgbench"), "-i", "-q", "-s", strconv.Itoa(o.scale), dbURL).CombinedOutput(); err != nil {
		return fmt.Errorf("pgbench -i: %v\n%s", err, out)
	}

	freshetAddr, stopFreshet, err := startFreshet(ctx, dbURL, false)
	if err != nil {
		return err
	}
	defer stopFreshet()
	loopAddr, stopLoop, err := startFreshet(ctx, dbURL, true)
	if err != nil {
		return err
	}
	defer stopLoop()
	bouncerAddr, bouncerPID, stopBouncer, err := startPgBouncer(ctx, super, dbURL)
	if err != nil {
		return err
	}
	defer stopBouncer()
	// PgBouncer runs in a process group of its own: stop it on a signal
	// too, or an interrupted run leaves it behind.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sigs
		stopBouncer()
		drop()
		fmt.Fprintln(os.Stderr, "pgwirebench: stopped by", s)
		os.Exit(1)
	}()

	targets := []struct{ name, url string }{
		{"postgres (direct)", dbURL},
		{"pgbouncer (session)", rehost(dbURL, bouncerAddr)},
		{"freshet (pumps)", rehost(dbURL, freshetAddr)},
		{"freshet (event loop)", rehost(dbURL, loopAddr)},
	}
	if o.cached {
		if err := createAggregateTable(ctx, dbURL); err != nil {
			return err
		}
		for _, txPooling := range []bool{false, true} {
			name := map[bool]string{false: "freshet (cached)", true: "freshet (cached, tx pool)"}[txPooling]
			if !selected(name, o.only) {
				continue
			}
			cached, err := startWarm(ctx, bindir, dbURL, name, txPooling, o)
			if err != nil {
				return err
			}
			defer cached.stop()
			cu := rehost(dbURL, cached.addr)
			targets = append(targets, struct{ name, url string }{name, cu})
			defer func() {
				s := cached.stats()
				fmt.Printf("\n%s totals: %d hits, %d misses, %d bypassed %v\n", name, s.Hits, s.Misses, sum(s.Bypassed), s.Bypassed)
			}()
			if !txPooling {
				defer reportCachedExtras(ctx, bindir, dbURL, cu, cached.applied, o)
			}
		}
	}
	if o.cpuprofile != "" {
		f, err := os.Create(o.cpuprofile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	results := make(map[pgbenchRun][]float64)
	for r := 0; r < o.rounds; r++ {
		for _, j := range o.threads {
			for i := range targets {
				tg := targets[(i+r)%len(targets)]
				if !selected(tg.name, o.only) {
					continue
				}
				tps, err := measure(bindir, tg.name, tg.url, j, bouncerPID, o)
				if err != nil {
					return err
				}
				fmt.Printf("round %d -j %d  %-24s %s\n", r+1, j, tg.name, tps.line)
				results[pgbenchRun{tg.name, j}] = append(results[pgbenchRun{tg.name, j}], tps.tps)
			}
		}
	}
	for _, j := range o.threads {
		fmt.Printf("\npgbench -S -M %s -c %d -j %d -T %s (scale %d), %d rounds, mean tps (excluding connection setup):\n",
			o.mode, o.clients, j, o.duration, o.scale, o.rounds)
		for _, tg := range targets {
			if rs := results[pgbenchRun{tg.name, j}]; len(rs) > 0 {
				fmt.Printf("  %-24s %10.0f\n", tg.name, mean(rs))
			}
		}
		printRatios(results, targets, j)
	}
	if len(o.threads) > 1 {
		printBestRatios(results, targets, o.threads)
	}
	return nil
}

// pgbenchRun names one target measured at one pgbench -j.
type pgbenchRun struct {
	target  string
	threads int
}

type measured struct {
	tps  float64
	line string // the figures printed for the run
}

// measure runs pgbench against one target at -j threads and reports
// its tps with the CPU it and the proxy took per transaction.
func measure(bindir, name, url string, threads, bouncerPID int, o options) (measured, error) {
	rBefore, wBefore := syscalls()
	selfBefore, bouncerBefore := cpuTicks("self"), cpuTicks(strconv.Itoa(bouncerPID))
	tps, clientCPU, err := pgbench(bindir, url, threads, o)
	if err != nil {
		return measured{}, fmt.Errorf("%s: %w", name, err)
	}
	rAfter, wAfter := syscalls()
	selfAfter, bouncerAfter := cpuTicks("self"), cpuTicks(strconv.Itoa(bouncerPID))
	txs := tps * o.duration.Seconds()
	extra := ""
	switch {
	case strings.HasPrefix(name, "freshet"):
		extra = fmt.Sprintf("  (%.1f µs CPU, %.1f read + %.1f write syscalls per transaction)",
			ticksToMicros(selfAfter-selfBefore)/txs, float64(rAfter-rBefore)/txs, float64(wAfter-wBefore)/txs)
	case strings.HasPrefix(name, "pgbouncer"):
		extra = fmt.Sprintf("  (%.1f µs CPU per transaction)", ticksToMicros(bouncerAfter-bouncerBefore)/txs)
	}
	extra += fmt.Sprintf("  [pgbench %.1f µs CPU/tx]", float64(clientCPU.Microseconds())/txs)
	return measured{tps: tps, line: fmt.Sprintf("%10.0f tps%s", tps, extra)}, nil
}

// startWarm starts freshet with the materializer (see startCached) and
// warms its cache with a pgbench run twice as long as the measured ones.
func startWarm(ctx context.Context, bindir, dbURL, name string, txPooling bool, o options) (*cachedFreshet, error) {
	cached, err := startCached(ctx, dbURL, txPooling)
	if err != nil {
		return nil, err
	}
	fmt.Printf("warming %s: pgbench -S -M %s -c %d for %s ...\n", name, o.mode, o.clients, 2*o.duration)
	warm := o
	warm.duration = 2 * o.duration
	if _, _, err := pgbench(bindir, rehost(dbURL, cached.addr), o.threads[0], warm); err != nil {
		cached.stop()
		return nil, fmt.Errorf("%s warm-up: %w", name, err)
	}
	s := cached.stats()
	fmt.Printf("  after warm-up: %d hits, %d fills, %d cached reads bypassed\n", s.Hits, s.Fills, sum(s.Bypassed))
	return cached, nil
}

var ratioBases = []string{"pgbouncer (session)", "postgres (direct)"}

// printRatios prints each freshet target's throughput at -j threads
// against PgBouncer's and direct PostgreSQL's at the same -j: the ratio of
// the means, and the range of the ratios within a round (runs of one round
// share the machine's mood).
func printRatios(results map[pgbenchRun][]float64, targets []struct{ name, url string }, threads int) {
	for _, tg := range targets {
		rs := results[pgbenchRun{tg.name, threads}]
		if !strings.HasPrefix(tg.name, "freshet") || len(rs) == 0 {
			continue
		}
		for _, base := range ratioBases {
			b := results[pgbenchRun{base, threads}]
			if len(b) != len(rs) {
				continue
			}
			lo, hi := math.Inf(1), math.Inf(-1)
			for i, v := range rs {
				lo, hi = min(lo, v/b[i]), max(hi, v/b[i])
			}
			fmt.Printf("  %-24s %.2fx %s (rounds %.2f-%.2f)\n", tg.name, mean(rs)/mean(b), base, lo, hi)
		}
	}
}

// printBestRatios compares every target at the -j where its mean was
// highest: no side is measured at a thread count that handicaps it.
func printBestRatios(results map[pgbenchRun][]float64, targets []struct{ name, url string }, threads []int) {
	best := func(name string) (float64, int) {
		top, at := 0.0, 0
		for _, j := range threads {
			if rs := results[pgbenchRun{name, j}]; len(rs) > 0 && mean(rs) > top {
				top, at = mean(rs), j
			}
		}
		return top, at
	}
	fmt.Printf("\neach target at its best -j (mean tps):\n")
	for _, tg := range targets {
		if top, at := best(tg.name); at != 0 {
			fmt.Printf("  %-24s %10.0f  (-j %d)\n", tg.name, top, at)
		}
	}
	for _, tg := range targets {
		top, at := best(tg.name)
		if !strings.HasPrefix(tg.name, "freshet") || at == 0 {
			continue
		}
		for _, base := range ratioBases {
			if b, bat := best(base); bat != 0 {
				fmt.Printf("  %-24s %.2fx %s, each at its best -j\n", tg.name, top/b, base)
			}
		}
	}
}

// selected reports whether name contains one of only's comma-separated
// parts, so that before/after comparisons can pick PgBouncer and the loop.
func selected(name, only string) bool {
	for _, part := range strings.Split(only, ",") {
		if strings.Contains(name, part) {
			return true
		}
	}
	return false
}

func sum(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// reportCachedExtras measures what pgbench throughput does not show: p50
// at one client, the aggregate, freshness.
func reportCachedExtras(ctx context.Context, bindir, dbURL, cachedURL string, applied *applyClock, o options) {
	fmt.Println()
	for _, tg := range []struct{ name, url string }{{"postgres (direct)", dbURL}, {"freshet (cached)", cachedURL}} {
		p50, err := latencyP50(bindir, tg.url, o)
		if err != nil {
			fmt.Println("p50 at 1 client:", tg.name, err)
			continue
		}
		fmt.Printf("pgbench -S -M %s -c 1 p50 latency  %-20s %s\n", o.mode, tg.name, p50)
	}
	direct, cached, err := aggregate(ctx, dbURL, cachedURL)
	if err != nil {
		fmt.Println("aggregate:", err)
	} else {
		fmt.Printf("SELECT count(*), sum(v) over 1M rows, median: direct %s, freshet cached %s (%.0fx)\n", direct, cached, float64(direct)/float64(cached))
	}
	load := loadAverage()
	applied.start()
	ds, err := freshness(ctx, dbURL, cachedURL, 200)
	stream := applied.stop()
	if err != nil {
		fmt.Println("freshness:", err)
	} else {
		fmt.Printf("freshness (embedded, origin commit -> freshet returns it, 200 updates): %s (load average %s -> %s)\n", quantiles(ds), load, loadAverage())
		fmt.Printf("  of which commit timestamp -> batch applied (stream + visibility wait, %d batches): %s\n", len(stream), quantiles(stream))
	}
}

func mean(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s / float64(len(xs))
}

var tpsLine = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// pgbench runs pgbench and returns its tps and the CPU time pgbench
// itself used: the client's share of the machine bounds every target.
func pgbench(bindir, url string, threads int, o options) (float64, time.Duration, error) {
	args := []string{"-n", "-S", "-M", o.mode, "-c", strconv.Itoa(o.clients), "-j", strconv.Itoa(threads), "-T", strconv.Itoa(int(o.duration.Seconds())), url}
	cmd := exec.Command(filepath.Join(bindir, "pgbench"), args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, 0, fmt.Errorf("pgbench: %v\n%s", err, out)
	}
	cpu := cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	if !strings.Contains(string(out), "number of failed transactions: 0") {
		return 0, 0, fmt.Errorf("pgbench reported failures:\n%s", out)
	}
	m := tpsLine.FindSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("no tps in pgbench output:\n%s", out)
	}
	tps, err := strconv.ParseFloat(string(m[1]), 64)
	return tps, cpu, err
}

func rehost(raw, addr string) string {
	u, _ := url.Parse(raw)
	u.Host = addr
	return u.String()
}

func createDB(ctx context.Context, super string) (string, func(), error) {
	conn, err := pgx.Connect(ctx, super)
	if err != nil {
		return "", nil, err
	}
	defer conn.Close(ctx)
	name := fmt.Sprintf("pgwirebench_%d", os.Getpid())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, err
	}
	u, _ := url.Parse(super)
	u.Path = "/" + name
	return u.String(), func() {
		c, err := pgx.Connect(ctx, super)
		if err != nil {
			return
		}
		defer c.Close(ctx)
		_, _ = c.Exec(ctx, "DROP DATABASE "+name+" WITH (FORCE)")
	}, nil
}

func startFreshet(ctx context.Context, dbURL string, eventLoop bool) (string, func(), error) {
	dialing, err := front.OriginDialing(dbURL)
	if err != nil {
		return "", nil, err
	}
	origin, err := postgres.NewOrigin(dialing)
	if err != nil {
		return "", nil, err
	}
	srv, err := pgwire.New(pgwire.Config{Connector: origin, NoEventLoop: !eventLoop, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	go func() { _ = srv.Serve(ctx, ln) }()
	return ln.Addr().String(), func() { _ = srv.Close() }, nil
}

// startPgBouncer runs PgBouncer in session mode in front of the origin,
// authenticating clients with the superuser's SCRAM verifier (which also
// lets PgBouncer log in to the origin with the client's proof).
func startPgBouncer(ctx context.Context, super, dbURL string) (addr string, pid int, stop func(), err error) {
	bin, err := exec.LookPath("pgbouncer")
	if err != nil {
		if _, statErr := os.Stat("/usr/sbin/pgbouncer"); statErr != nil {
			return "", 0, nil, errors.New("pgbouncer not installed; run make bench-pgwire, which installs it")
		}
		bin = "/usr/sbin/pgbouncer"
	}
	conn, err := pgx.Connect(ctx, super)
	if err != nil {
		return "", 0, nil, err
	}
	u, _ := url.Parse(super)
	var verifier string
	err = conn.QueryRow(ctx, "SELECT rolpassword FROM pg_authid WHERE rolname = $1", u.User.Username()).Scan(&verifier)
	conn.Close(ctx)
	if err != nil {
		return "", 0, nil, err
	}
	dir, err := os.MkdirTemp("", "pgwirebench-pgbouncer")
	if err != nil {
		return "", 0, nil, err
	}
	_ = os.Chmod(dir, 0o755)
	port, err := freePort()
	if err != nil {
		return "", 0, nil, err
	}
	host, pgPort, _ := net.SplitHostPort(u.Host)
	ini := fmt.Sprintf(`[databases]
* = host=%s port=%s
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = %d
unix_socket_dir =
auth_type = scram-sha-256
auth_file = %s/userlist.txt
pool_mode = session
; plaintext to PostgreSQL, like every other target (the test cluster
; offers TLS; PgBouncer's default would take it)
server_tls_sslmode = disable
max_client_conn = 200
default_pool_size = 50
logfile = %s/pgbouncer.log
log_connections = 0
log_disconnections = 0
syslog = 0
`, host, pgPort, port, dir, dir)
	if err := os.WriteFile(filepath.Join(dir, "pgbouncer.ini"), []byte(ini), 0o644); err != nil {
		return "", 0, nil, err
	}
	users := fmt.Sprintf("%q %q\n", u.User.Username(), verifier)
	if err := os.WriteFile(filepath.Join(dir, "userlist.txt"), []byte(users), 0o644); err != nil {
		return "", 0, nil, err
	}
	args := []string{bin, filepath.Join(dir, "pgbouncer.ini")}
	if os.Geteuid() == 0 { // PgBouncer refuses to run as root
		runAs := "postgres"
		pw, err := user.Lookup(runAs)
		if err != nil {
			return "", 0, nil, fmt.Errorf("running as root and no %s user for pgbouncer", runAs)
		}
		uid, _ := strconv.Atoi(pw.Uid)
		gid, _ := strconv.Atoi(pw.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			return "", 0, nil, err
		}
		args = append([]string{"setpriv", "--reuid=" + runAs, "--regid=" + runAs, "--init-groups", "--"}, args...)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard // its log file has it all
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return "", 0, nil, err
	}
	var once sync.Once
	stop = func() { once.Do(func() { stopProcess(cmd, dir) }) }
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			_ = c.Close()
			return addr, cmd.Process.Pid, stop, nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "pgbouncer.log"))
	stop()
	return "", 0, nil, fmt.Errorf("pgbouncer did not start:\n%s", log)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// syscalls reads this process's read and write syscall counts.
func syscalls() (r, w int64) {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			r, _ = strconv.ParseInt(v, 10, 64)
		}
		if v, ok := strings.CutPrefix(line, "syscw: "); ok {
			w, _ = strconv.ParseInt(v, 10, 64)
		}
	}
	return r, w
}

// stopProcess stops PgBouncer by its pid and removes its directory.
func stopProcess(cmd *exec.Cmd, dir string) {
	_ = cmd.Process.Signal(syscall.SIGINT)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
	}
	_ = os.RemoveAll(dir)
}

// cpuTicks is the user+system CPU time of /proc/<pid> in clock ticks.
func cpuTicks(pid string) int64 {
	b, err := os.ReadFile("/proc/" + pid + "/stat")
	if err != nil {
		return 0
	}
	// Fields after the parenthesised command name; utime and stime are
	// the 14th and 15th fields of the whole line.
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	s, _ := strconv.ParseInt(f[12], 10, 64)
	return u + s
}

// ticksToMicros converts clock ticks (USER_HZ, 100 on Linux) to µs.
func ticksToMicros(t int64) float64 { return float64(t) * 1e4 }
