package front

import (
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// listen opens the clients' listener: a Unix socket when addr is a path
// (libpq's clients name /dir/.s.PGSQL.PORT by host=/dir port=PORT), else
// TCP. A socket file left by a process that is gone is replaced; one
// that still answers is in use.
func listen(addr string) (net.Listener, error) {
	if !strings.HasPrefix(addr, "/") {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, fmt.Errorf("listen: %w", err)
		}
		return ln, nil
	}
	if fi, err := os.Lstat(addr); err == nil && fi.Mode()&os.ModeSocket != 0 {
		if c, err := net.DialTimeout("unix", addr, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("listen: %s is in use", addr)
		}
		_ = os.Remove(addr)
	}
	ln, err := net.Listen("unix", addr)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	return ln, nil
}
