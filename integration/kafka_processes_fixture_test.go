package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/freshetdb/freshet/internal/ingestnode"
	"github.com/freshetdb/freshet/internal/region"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/schemas"
)

// buildFreshet builds cmd/freshet into a temporary directory.
func buildFreshet(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "freshet")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/freshet")
	cmd.Dir = ".."
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// processSource creates the table a process test's ingest publishes, rows
// rows at version 0, under a unique name; the table, and the slot and
// publication named after it, are dropped when the test ends.
func processSource(ctx context.Context, t *testing.T, prefix string, rows int) (super *pgx.Conn, name, table string) {
	t.Helper()
	name = testenv.UniqueName(prefix)
	table = name + "_acct"
	super, err := pgx.Connect(ctx, testenv.PostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		testenv.DropSource(super, name+"_slot", name+"_pub", table)
		super.Close(context.Background())
	})
	if _, err := super.Exec(ctx, fmt.Sprintf(`CREATE TABLE %s (id int PRIMARY KEY, ver int NOT NULL);
		INSERT INTO %s SELECT g, 0 FROM generate_series(1, %d) g`, table, table, rows)); err != nil {
		t.Fatal(err)
	}
	return super, name, table
}

// freePort returns a loopback address nothing listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// child is a freshet process started by a test; its log goes to a file
// printed when the test fails. It is killed when the test ends.
type child struct {
	t    *testing.T
	name string
	bin  string
	args []string
	cmd  *exec.Cmd
	log  string
	runs int
}

func startChild(t *testing.T, bin, name string, args ...string) *child {
	t.Helper()
	c := &child{t: t, name: name, bin: bin, args: args}
	t.Cleanup(func() {
		c.kill()
		if t.Failed() {
			for i := 1; i <= c.runs; i++ {
				out, _ := os.ReadFile(fmt.Sprintf("%s.%d", c.log, i))
				t.Logf("---- %s log (run %d) without catalog reloads, last 8000 bytes:\n%s", name, i, tail(withoutLines(out, "msg=\"catalog loaded\""), 8000))
			}
		}
	})
	c.log = filepath.Join(t.TempDir(), name+".log")
	c.start()
	return c
}

// withoutLines drops the lines of b that contain s.
func withoutLines(b []byte, s string) []byte {
	var out []byte
	for _, l := range bytes.SplitAfter(b, []byte("\n")) {
		if !bytes.Contains(l, []byte(s)) {
			out = append(out, l...)
		}
	}
	return out
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func (c *child) start() {
	c.t.Helper()
	c.runs++
	f, err := os.Create(fmt.Sprintf("%s.%d", c.log, c.runs))
	if err != nil {
		c.t.Fatal(err)
	}
	defer f.Close()
	c.cmd = exec.Command(c.bin, c.args...)
	c.cmd.Stdout, c.cmd.Stderr = f, f
	if err := c.cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
}

// kill sends SIGKILL to the process (by its pid) and reaps it.
func (c *child) kill() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(c.cmd.Process.Pid, syscall.SIGKILL)
	_ = c.cmd.Wait()
	c.cmd = nil
}

// getStatus reads a node's /status into v.
func getStatus(ctx context.Context, addr string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// regionCaughtUp waits until the region behind admin addr reports a
// watermark covering p.
func regionCaughtUp(ctx context.Context, t *testing.T, addr string, p schemas.Position, within time.Duration) region.Status {
	t.Helper()
	deadline := time.Now().Add(within)
	var s region.Status
	for {
		s = region.Status{}
		err := getStatus(ctx, addr, &s)
		if err == nil && s.Watermark.Set {
			lsn, perr := schemas.ParseLSN(strings.TrimPrefix(s.Watermark.Position, "lsn "))
			if perr == nil && lsn >= p.LSN {
				return s
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("region %s did not reach %s in %s: %+v (err %v)", addr, p, within, s.Watermark, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// ingestStatus reads the ingest's /status.
func ingestStatus(ctx context.Context, addr string) (ingestnode.Status, error) {
	var s ingestnode.Status
	return s, getStatus(ctx, addr, &s)
}

// regionTurnsStale waits until the region behind admin addr says, in its
// /status and its /metrics, that its watermark is past the staleness
// bound (so its reads go to the origin).
func regionTurnsStale(ctx context.Context, t *testing.T, addr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		var s region.Status
		err := getStatus(ctx, addr, &s)
		if err == nil && s.Watermark.Stale {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("region %s did not report stale in %s: %+v (err %v)", addr, within, s.Watermark, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	_, body := httpGet(ctx, t, "http://"+addr+"/metrics")
	if !strings.Contains(body, "\nfreshet_region_stale{region=") || !strings.Contains(grepLines(body, "freshet_region_stale{"), "} 1") {
		t.Errorf("region %s is stale in /status but its metrics do not say so:\n%s", addr, grepLines(body, "freshet_region_"))
	}
}

func grepLines(s, prefix string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// rawStatus is a node's /status as it came, or the error reading it.
func rawStatus(ctx context.Context, addr string) string {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/status", nil)
	if err != nil {
		return err.Error()
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err.Error()
	}
	return string(body)
}
