// Package sockets reaches the socket under a connection, for the system
// calls the net package does not make (peeks, polls).
package sockets

import (
	"crypto/tls"
	"net"
	"syscall"
)

// Raw returns the raw socket under c, TLS unwrapped, or nil when c has
// none (a pipe).
func Raw(c net.Conn) syscall.RawConn {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}
