package postgres

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// peekReadable reports whether the socket fd has bytes to read or has
// reached its end, or failed, without waiting or consuming anything. A
// raw recvfrom: unix.Recvfrom allocates the sender's address.
func peekReadable(fd uintptr) bool {
	var b [1]byte
	for {
		_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, fd, uintptr(unsafe.Pointer(&b[0])), 1,
			unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
		if errno != unix.EINTR {
			return errno != unix.EAGAIN // data, the end (0 bytes), or an error
		}
	}
}
