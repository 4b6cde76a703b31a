//go:build linux

package pgwire

import (
	"context"

	"golang.org/x/sys/unix"
)

const parkSupported = true

// parkInLoop moves the session, idle after cache hits, into the event
// loop, which answers its hits until it hands the session back. It
// reports true when the session is over; false means the pumps go on.
func (s *session) parkInLoop(ctx context.Context) (ended bool) {
	l := s.srv.eventLoop()
	if l == nil || s.origin.Reader.Buffered() != 0 || s.cr.Buffered() != 0 || !s.loopIdle() {
		// The origin spoke while its pump stopped, or the loop is gone.
		s.unpark()
		return false
	}
	cfd, err := dupSocket(s.client)
	if err != nil {
		s.unpark()
		return false
	}
	ofd, err := dupSocket(s.origin.Conn)
	if err != nil {
		_ = unix.Close(cfd)
		s.unpark()
		return false
	}
	ls := &loopSession{s: s, done: make(chan loopResult, 1), cached: true}
	ls.client = loopSide{ls: ls, fd: cfd, peer: &ls.origin, buf: make([]byte, s.srv.cfg.BufferSize)}
	ls.origin = loopSide{ls: ls, fd: ofd, peer: &ls.client, origin: true}
	if !l.add(ls) {
		_ = unix.Close(cfd)
		_ = unix.Close(ofd)
		s.unpark()
		return false
	}
	s.srv.loopStats.parked()
	s.inLoop.Store(true)
	if s.adopted != nil {
		s.srv.dropConn(s.adopted)
		s.adopted = nil
	} else {
		_ = s.client.Close()
	}
	_ = s.origin.Conn.Close()
	res := <-ls.done
	s.srv.loopStats.handedBack(ls.hits)
	s.afterLoopStint(ls.hits)
	return !s.resume(ctx, res)
}

// handleCached serves a parked session's events: its client's requests
// are answered from the cache or handed back, never relayed; anything
// from the origin is for the pumps.
func (l *eventLoop) handleCached(sd *loopSide, ev uint32) {
	ls := sd.ls
	if sd.origin {
		l.handBack(ls, false)
		return
	}
	if ev&unix.EPOLLOUT != 0 && !l.writeHit(ls) {
		return
	}
	if ev&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		if len(ls.out) > 0 {
			// Blocked on the client: only an end or error gets here.
			if ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0 {
				l.handBack(ls, false)
			}
			return
		}
		if !l.readRequests(sd) {
			return
		}
	}
	l.serveHits(ls)
}

// readRequests reads what the client sent after what is buffered; false
// when nothing came or the session was handed back.
func (l *eventLoop) readRequests(sd *loopSide) bool {
	if sd.f == sd.w {
		sd.r, sd.f, sd.w = 0, 0, 0
	} else if sd.w == len(sd.buf) {
		n := copy(sd.buf, sd.buf[sd.f:sd.w])
		sd.r, sd.f, sd.w = 0, 0, n
	}
	if sd.w == len(sd.buf) {
		// A request larger than the buffer is for the pumps.
		l.handBack(sd.ls, false)
		return false
	}
	n, err := rawRead(sd.fd, sd.buf[sd.w:])
	if err == unix.EAGAIN {
		return false
	}
	if err != nil || n == 0 {
		l.handBack(sd.ls, false)
		return false
	}
	sd.w += n
	return true
}

// serveHits answers the whole requests buffered, in order, while they
// are hits; the first that is not goes back to the pumps with the rest.
func (l *eventLoop) serveHits(ls *loopSession) {
	sd := &ls.client
	for sd.f < sd.w && len(ls.out) == 0 {
		e, total, v := ls.s.loopHit(sd.buf[sd.f:sd.w])
		switch v {
		case hitMore:
			return
		case hitNo:
			l.handBack(ls, false)
			return
		}
		sd.f += total
		sd.r = sd.f
		ls.hits++
		ls.out = e.Response()
		if !l.writeHit(ls) {
			return
		}
	}
}

// writeHit writes what remains of the response being sent; false when
// the client is full (its EPOLLOUT resumes it) or the session was handed
// back.
func (l *eventLoop) writeHit(ls *loopSession) bool {
	sd := &ls.client
	for len(ls.out) > 0 {
		n, err := rawWrite(sd.fd, ls.out)
		if err == unix.EAGAIN {
			ls.s.srv.loopStats.writeStalls.Add(1)
			l.interest(sd, unix.EPOLLOUT)
			return false
		}
		if err != nil {
			l.handBack(ls, false)
			return false
		}
		ls.out = ls.out[n:]
	}
	l.interest(sd, unix.EPOLLIN)
	return true
}
