package sockets

import (
	"crypto/tls"
	"net"
	"testing"
)

func TestRaw(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if Raw(c) == nil {
		t.Error("no socket under a TCP connection")
	}
	if Raw(tls.Client(c, &tls.Config{})) == nil {
		t.Error("no socket under a TLS connection over TCP")
	}
	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	if Raw(p1) != nil {
		t.Error("a socket under a pipe")
	}
}
