package postgres

import (
	"net"
	"syscall"

	"github.com/freshetdb/freshet/internal/sockets"
	"github.com/freshetdb/freshet/serve/pgwire"
)

// ended reports whether the origin ended an idle backend while it sat in
// the pool (a restart, a failover, pg_terminate_backend,
// idle_session_timeout): an idle backend sends nothing unless it is going
// away, with a FATAL ErrorResponse and the end of the stream. PgBouncer
// sees this because its idle server sockets stay in its event loop; here
// the socket is peeked when the backend is lent, which consumes nothing.
// Anything unexpected counts as ended: the cost is only a new backend.
func ended(oc *pgwire.OriginConn) bool {
	if oc.Reader != nil && oc.Reader.Buffered() > 0 {
		return true
	}
	cc, ok := oc.Conn.(*countedConn)
	if !ok || cc.peek == nil {
		return false // not a socket (a test's pipe): nothing to peek at
	}
	return cc.peek.ended()
}

// socketPeek peeks at a backend's socket. It is made once per backend,
// so that a peek allocates nothing.
type socketPeek struct {
	raw      syscall.RawConn
	readable bool
	check    func(fd uintptr) bool
}

// newSocketPeek returns a peek at the socket under c, or nil when c has
// none.
func newSocketPeek(c net.Conn) *socketPeek {
	raw := sockets.Raw(c)
	if raw == nil {
		return nil
	}
	p := &socketPeek{raw: raw}
	p.check = func(fd uintptr) bool {
		p.readable = peekReadable(fd)
		return true
	}
	return p
}

// ended reports whether the socket has bytes to read, has reached its
// end, or failed.
func (p *socketPeek) ended() bool {
	if err := p.raw.Read(p.check); err != nil {
		return true
	}
	return p.readable
}
