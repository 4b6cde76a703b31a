package pgwire

import (
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/freshetdb/freshet/internal/sockets"
	"golang.org/x/sys/unix"
)

// clientGoneEvery is how often a session waiting for a backend looks
// whether its client hung up.
const clientGoneEvery = 100 * time.Millisecond

// watchClient calls gone, once, when the client's end of c hangs up (a
// FIN, a reset), without reading what the client sent: a request it
// pipelined stays for the session. It looks every clientGoneEvery until
// stop.
func watchClient(c net.Conn, gone func()) (stop func()) {
	rc := sockets.Raw(c)
	if rc == nil {
		return func() {}
	}
	quit := make(chan struct{})
	go func() {
		t := time.NewTicker(clientGoneEvery)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
			}
			if hungUp(rc) {
				gone()
				return
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(quit) }) }
}

func hungUp(rc syscall.RawConn) bool {
	hup := false
	_ = rc.Control(func(fd uintptr) {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLRDHUP}}
		if n, err := unix.Poll(fds, 0); err == nil && n > 0 {
			hup = fds[0].Revents&(unix.POLLRDHUP|unix.POLLHUP|unix.POLLERR) != 0
		}
	})
	return hup
}
