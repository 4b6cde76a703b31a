//go:build !linux

package pgwire

import "net"

// watchClient cannot tell a hung-up client without reading it here: a
// waiting session notices when its turn comes.
func watchClient(net.Conn, func()) (stop func()) { return func() {} }
