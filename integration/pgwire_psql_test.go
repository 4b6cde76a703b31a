package integration

import (
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/serve/pgwire"
)

// notifyPID matches the backend pid psql prints with a notification: it
// differs between any two sessions, direct or not.
var notifyPID = regexp.MustCompile(`server process with PID \d+`)

// runPsql runs the script file with psql against url and returns its
// output, stdout and stderr interleaved as psql wrote them.
func runPsql(ctx context.Context, t *testing.T, url, script string) string {
	t.Helper()
	psql := filepath.Join(testenv.PostgresBinDir(t), "psql")
	cmd := exec.CommandContext(ctx, psql, "-X", "-a", "-v", "ON_ERROR_STOP=0", "-f", script, url)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("psql: %v\n%s", err, out)
	}
	return notifyPID.ReplaceAllString(string(out), "server process with PID N")
}

// TestPgwireDifferentialPsql runs a psql script (COPY in both directions,
// LISTEN/NOTIFY, errors inside transactions, \bind, multi-statement lines)
// directly and through freshet and compares psql's output.
func TestPgwireDifferentialPsql(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	p := startProxy(t, pgwire.Config{})
	script, err := filepath.Abs("testdata/pgwire_session.psql")
	if err != nil {
		t.Fatal(err)
	}
	direct := testenv.PostgresURL(t)
	want := runPsql(ctx, t, direct, script)
	got := runPsql(ctx, t, p.url(t, direct), script)
	for _, must := range []string{"Asynchronous notification \"ch_freshet\" with payload \"hello\"", "22012", "fig, dried", `invalid input syntax for type integer: "not-a-number"`, "NOTICE:  notice from plpgsql"} {
		if !strings.Contains(want, must) {
			t.Fatalf("direct psql output lacks %q: the script did not exercise it:\n%s", must, want)
		}
	}
	if got != want {
		t.Fatalf("psql output differs.\n--- direct\n%s\n--- freshet\n%s", want, got)
	}
}
