//go:build unix && !linux

package postgres

import "golang.org/x/sys/unix"

// peekReadable reports whether the socket fd has bytes to read or has
// reached its end, or failed, without waiting or consuming anything.
func peekReadable(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, err := unix.Recvfrom(int(fd), b[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if err != unix.EINTR {
			return err != unix.EAGAIN // data, the end (0 bytes), or an error
		}
	}
}
