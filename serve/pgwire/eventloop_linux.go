//go:build linux

package pgwire

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// An eventLoop relays plain sessions the way PgBouncer does: one thread
// in a level-triggered epoll_wait over the raw sockets of every session
// it holds, reading what is ready and writing it to the peer at once.
// Go's netpoller re-arms, parks and wakes a goroutine per read; here a
// wakeup serves every ready socket. The loop handles only the steady
// state: a session whose side ends, fails or breaks the protocol, and
// every session at shutdown, is handed back to its goroutine, which
// finishes it with the ordinary pumps.
type eventLoop struct {
	epfd int
	wake int // eventfd: Close wants every session handed back
	log  *slog.Logger

	mu     sync.Mutex
	sides  map[int32]*loopSide
	closed bool
	// draining: the sessions go back to their pumps to be drained, not
	// ended.
	draining bool
}

// loopSession is a session while its sockets belong to the loop.
type loopSession struct {
	s              *session
	client, origin loopSide
	done           chan loopResult // the hand-back, once
	handed         bool

	// A parked cached session (see parkInLoop): its client's requests
	// are answered from the cache, not relayed.
	cached bool
	out    []byte // what remains to write of a cached response
	hits   int
}

// loopSide is one socket of a loopSession and what was read from it.
type loopSide struct {
	ls     *loopSession
	fd     int
	peer   *loopSide
	origin bool
	events uint32 // epoll interest

	buf []byte
	// buf[r:f] is scanned and due to the peer; buf[f:w] is not yet a
	// whole message (or the message the scan stopped at).
	r, f, w int
	skip    int  // bytes still to come of a message larger than buf
	last    byte // type of the last origin message scanned
}

// loopResult is what a session's goroutine needs to go on without the
// loop: the sockets, and both sides' unsent and unscanned bytes.
type loopResult struct {
	shutdown               bool
	clientFd, originFd     int
	toOrigin, toClient     []byte // scanned, not yet written
	fromClient, fromOrigin []byte // read, not scanned
	clientSkip, originSkip int
	lastOrigin             byte
}

func newEventLoop(log *slog.Logger) (*eventLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wake, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
	if err != nil {
		_ = unix.Close(epfd)
		return nil, err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wake)}); err != nil {
		_ = unix.Close(epfd)
		_ = unix.Close(wake)
		return nil, err
	}
	l := &eventLoop{epfd: epfd, wake: wake, log: log, sides: make(map[int32]*loopSide)}
	go l.run()
	return l, nil
}

// add gives the loop a session's two sockets, which it now owns. It
// reports false when the loop is closed; the sockets are then still the
// caller's.
func (l *eventLoop) add(ls *loopSession) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	for _, sd := range []*loopSide{&ls.client, &ls.origin} {
		l.sides[int32(sd.fd)] = sd
		sd.events = unix.EPOLLIN
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, sd.fd, &unix.EpollEvent{Events: sd.events, Fd: int32(sd.fd)}); err != nil {
			for _, d := range []*loopSide{&ls.client, &ls.origin} {
				_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, d.fd, nil)
				delete(l.sides, int32(d.fd))
			}
			return false
		}
	}
	return true
}

// close hands every session back to be ended and stops the loop.
func (l *eventLoop) close() { l.stop(false) }

// drain hands every session back to its pumps, which go on, and stops
// the loop.
func (l *eventLoop) drain() { l.stop(true) }

func (l *eventLoop) stop(drain bool) {
	l.mu.Lock()
	if l.closed {
		// Stopped already (or stopping): its wake descriptor may be
		// closed, and its number another file's by now.
		l.mu.Unlock()
		return
	}
	l.closed, l.draining = true, drain
	l.mu.Unlock()
	var one [8]byte
	one[0] = 1
	_, _ = unix.Write(l.wake, one[:])
}

func (l *eventLoop) run() {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	defer func() {
		_ = unix.Close(l.epfd)
		_ = unix.Close(l.wake)
	}()
	events := make([]unix.EpollEvent, 256)
	sides := make([]*loopSide, len(events))
	for {
		n, err := l.wait(events)
		if err != nil {
			// No session may be added to a loop that stopped: set closed
			// before every session is handed back.
			l.log.Error("pgwire: event loop stopped", "err", err)
			l.mu.Lock()
			l.closed = true
			l.mu.Unlock()
			l.handBackAll(true)
			return
		}
		woken := l.lookup(events[:n], sides)
		for i := range events[:n] {
			if sd := sides[i]; sd != nil && !sd.ls.handed {
				l.handle(sd, events[i].Events)
			}
			sides[i] = nil
		}
		if closed, draining := l.state(); woken && closed {
			l.handBackAll(!draining)
			return
		}
	}
}

// wait blocks until events are ready. It is an ordinary syscall, so the
// runtime may hand this thread's P to other goroutines meanwhile. A raw
// zero-timeout epoll_wait first was measured (ADR 0005): it saves the
// scheduler's syscall bookkeeping, under 1% of the loop's CPU, and adds a
// syscall whenever nothing is ready.
func (l *eventLoop) wait(events []unix.EpollEvent) (int, error) {
	for {
		n, err := unix.EpollWait(l.epfd, events, -1)
		if err != unix.EINTR {
			return n, err
		}
	}
}

// lookup resolves the events' descriptors to their sides under one lock
// for the whole batch. A side handed back while the batch is handled is
// marked handed, so its stale entry is skipped. It reports whether the
// wake eventfd fired.
func (l *eventLoop) lookup(events []unix.EpollEvent, sides []*loopSide) (woken bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := range events {
		if events[i].Fd == int32(l.wake) {
			woken = true
			continue
		}
		sides[i] = l.sides[events[i].Fd]
	}
	return woken
}

func (l *eventLoop) state() (closed, draining bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.closed, l.draining
}

func (l *eventLoop) handBackAll(shutdown bool) {
	l.mu.Lock()
	var all []*loopSession
	for _, sd := range l.sides {
		if !sd.origin {
			all = append(all, sd.ls)
		}
	}
	l.mu.Unlock()
	for _, ls := range all {
		l.handBack(ls, shutdown)
	}
}

func (l *eventLoop) handle(sd *loopSide, ev uint32) {
	if sd.ls.cached {
		l.handleCached(sd, ev)
		return
	}
	if ev&unix.EPOLLOUT != 0 && !l.flush(sd.peer) {
		return
	}
	if ev&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
		return
	}
	if sd.events&unix.EPOLLIN == 0 {
		// Blocked on the peer; only an end or error gets here (epoll
		// reports those regardless): the pumps finish the session.
		if ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			l.handBack(sd.ls, false)
		}
		return
	}
	l.relay(sd)
}

// relay reads what src has, scans whole messages and writes them to the
// peer; what the peer does not take waits for its EPOLLOUT.
func (l *eventLoop) relay(src *loopSide) {
	if src.r == src.w {
		src.r, src.f, src.w = 0, 0, 0
	} else if src.w == len(src.buf) {
		n := copy(src.buf, src.buf[src.r:src.w])
		src.f -= src.r
		src.w, src.r = n, 0
	}
	n, err := rawRead(src.fd, src.buf[src.w:])
	if err == unix.EAGAIN {
		return
	}
	if err != nil || n == 0 {
		l.handBack(src.ls, false)
		return
	}
	src.w += n
	stop := src.scan()
	if !l.flush(src) {
		return
	}
	if stop {
		l.handBack(src.ls, false)
	}
}

// flush writes src's scanned bytes to its peer. It reports false when
// the session was handed back or the peer is full.
func (l *eventLoop) flush(src *loopSide) bool {
	dst := src.peer
	for src.r < src.f {
		n, err := rawWrite(dst.fd, src.buf[src.r:src.f])
		if err == unix.EAGAIN {
			l.interest(src, src.events&^unix.EPOLLIN)
			l.interest(dst, dst.events|unix.EPOLLOUT)
			return false
		}
		if err != nil {
			l.handBack(src.ls, false)
			return false
		}
		src.r += n
	}
	if dst.events&unix.EPOLLOUT != 0 {
		l.interest(dst, dst.events&^unix.EPOLLOUT)
		l.interest(src, src.events|unix.EPOLLIN)
	}
	return true
}

func (l *eventLoop) interest(sd *loopSide, events uint32) {
	if sd.events == events {
		return
	}
	sd.events = events
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, sd.fd, &unix.EpollEvent{Events: events, Fd: int32(sd.fd)})
}

// scan advances f over the whole messages in buf[f:w] (and through a
// large message as it streams), accounting them as the pumps do. It
// reports true at a message the pumps must handle: Terminate or a bad
// header; f then stays at its start.
func (sd *loopSide) scan() (stop bool) {
	s := sd.ls.s
	for sd.f < sd.w {
		if sd.skip > 0 {
			adv := min(sd.skip, sd.w-sd.f)
			sd.f += adv
			sd.skip -= adv
			continue
		}
		m := sd.buf[sd.f:sd.w]
		if len(m) < 5 {
			return false
		}
		typ, n := m[0], int(int32(uint32(m[1])<<24|uint32(m[2])<<16|uint32(m[3])<<8|uint32(m[4])))
		if sd.origin {
			if n < 4 {
				return true
			}
		} else if typ == 'X' || s.checkFrontend(typ, n) != nil {
			return true
		}
		total := n + 1
		if total <= len(sd.buf) && len(m) < total {
			return false
		}
		if sd.origin {
			if typ == 'Z' && n == 5 {
				s.readyForQuery(m[5])
			}
			sd.last = typ
		} else {
			s.accountClient(typ)
		}
		if total > len(sd.buf) {
			sd.skip = total
			continue
		}
		sd.f += total
	}
	return false
}

// handBack takes the session's sockets out of the loop and gives them,
// with what is buffered, to the session's goroutine.
func (l *eventLoop) handBack(ls *loopSession, shutdown bool) {
	if ls.handed {
		return
	}
	ls.handed = true
	l.mu.Lock()
	for _, sd := range []*loopSide{&ls.client, &ls.origin} {
		_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, sd.fd, nil)
		delete(l.sides, int32(sd.fd))
	}
	l.mu.Unlock()
	c, o := &ls.client, &ls.origin
	toClient := o.buf[o.r:o.f]
	if ls.cached {
		toClient = ls.out
	}
	ls.done <- loopResult{
		shutdown: shutdown,
		clientFd: c.fd, originFd: o.fd,
		toOrigin: c.buf[c.r:c.f], toClient: toClient,
		fromClient: c.buf[c.f:c.w], fromOrigin: o.buf[o.f:o.w],
		clientSkip: c.skip, originSkip: o.skip,
		lastOrigin: o.last,
	}
}

// rawRead and rawWrite are read(2) and write(2) on non-blocking sockets:
// they never block, so they need not tell the scheduler.
func rawRead(fd int, p []byte) (int, error) {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}

func rawWrite(fd int, p []byte) (int, error) {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return 0, e
		}
		return int(n), nil
	}
}

// runInLoop relays the session in the Server's event loop when it is
// eligible, until the loop hands it back. It reports true when the
// session is over; false means the pumps go on (or take it from the start).
func (s *session) runInLoop(ctx context.Context) (ended bool) {
	if !s.loopable() {
		return false
	}
	l := s.srv.eventLoop()
	if l == nil {
		return false
	}
	cfd, err := dupSocket(s.client)
	if err != nil {
		return false
	}
	ofd, err := dupSocket(s.origin.Conn)
	if err != nil {
		_ = unix.Close(cfd)
		return false
	}
	size := s.srv.cfg.BufferSize
	ls := &loopSession{s: s, done: make(chan loopResult, 1)}
	ls.client = loopSide{ls: ls, fd: cfd, peer: &ls.origin, buf: make([]byte, size)}
	ls.origin = loopSide{ls: ls, fd: ofd, peer: &ls.client, origin: true, buf: make([]byte, size)}
	if !l.add(ls) {
		_ = unix.Close(cfd)
		_ = unix.Close(ofd)
		return false
	}
	s.inLoop.Store(true)
	// The duplicates are the sockets now; closing the originals takes
	// them out of Go's poller.
	_ = s.client.Close()
	_ = s.origin.Conn.Close()
	return !s.resume(ctx, <-ls.done)
}

// loopable reports whether the loop can relay the session: plain sockets
// on both sides, relay only (no cache, no pooling), no idle timeout, and
// nothing buffered yet.
func (s *session) loopable() bool {
	return s.cache == nil && s.tx == nil && s.srv.cfg.Pool == nil && s.srv.cfg.IdleTimeout == 0 &&
		plainSocket(s.client) && plainSocket(s.origin.Conn) &&
		s.cr.Buffered() == 0 && s.origin.Reader.Buffered() == 0
}

// dupSocket returns a non-blocking duplicate of c's descriptor.
func dupSocket(c net.Conn) (int, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return -1, errors.New("pgwire: not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd, derr := -1, error(nil)
	if err := rc.Control(func(fd uintptr) { nfd, derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		_ = unix.Close(nfd)
		return -1, err
	}
	return nfd, nil
}

// resume gives the session back its sockets as net.Conns, with what the
// loop held, so the pumps finish it. It reports false when the session
// is over instead (shutdown, or the sockets could not be taken back).
func (s *session) resume(ctx context.Context, res loopResult) bool {
	if res.shutdown {
		// As run does when Close ends the client's connection.
		if s.busy() || s.txStatus.Load() != 'I' {
			s.cancelOrigin(ctx)
		}
		_ = unix.Close(res.clientFd)
		_ = unix.Close(res.originFd)
		return false
	}
	client, cerr := fdConn(res.clientFd)
	origin, oerr := fdConn(res.originFd)
	if cerr != nil || oerr != nil || !s.srv.adoptConn(client) {
		for _, c := range []net.Conn{client, origin} {
			if c != nil {
				_ = c.Close()
			}
		}
		return false
	}
	s.adopted = client
	s.setClient(client)
	s.origin.Conn = origin
	size := s.srv.cfg.BufferSize
	s.cr = bufio.NewReaderSize(after(res.fromClient, &clientReader{conn: client, s: s}), size)
	s.origin.Reader = bufio.NewReaderSize(after(res.fromOrigin, &originReader{s: s, conn: origin}), size)
	// The pumps write what is pending, each its own direction, so
	// neither waits on a peer that waits on the other.
	s.resumed = resumeState{toOrigin: res.toOrigin, toClient: res.toClient,
		clientSkip: res.clientSkip, originSkip: res.originSkip, lastOrigin: res.lastOrigin}
	return true
}

// after reads b, then r.
func after(b []byte, r io.Reader) io.Reader {
	if len(b) == 0 {
		return r
	}
	return io.MultiReader(bytes.NewReader(b), r)
}

// fdConn makes a net.Conn of fd, which it closes.
func fdConn(fd int) (net.Conn, error) {
	f := os.NewFile(uintptr(fd), "pgwire-socket")
	defer func() { _ = f.Close() }()
	return net.FileConn(f)
}
