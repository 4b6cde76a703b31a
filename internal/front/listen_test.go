package front

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
)

// TestListenUnixSocket: a path is a Unix socket; a socket another listener
// still answers on is refused, not taken over; one left behind is reused.
func TestListenUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), ".s.PGSQL.6432")
	ln, err := listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	if ln.Addr().Network() != "unix" {
		t.Fatalf("listening on %s, want unix", ln.Addr().Network())
	}
	if _, err := listen(sock); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Fatalf("a second listener on a live socket: %v, want in use", err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	_ = ln.Close()
	again, err := listen(sock)
	if err != nil {
		t.Fatalf("a socket file left behind: %v", err)
	}
	_ = again.Close()
}
