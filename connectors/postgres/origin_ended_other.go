//go:build !unix

package postgres

// peekReadable cannot peek here: an ended backend is found when used.
func peekReadable(uintptr) bool { return false }
