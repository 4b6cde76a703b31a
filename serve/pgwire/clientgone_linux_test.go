package pgwire

import (
	"io"
	"net"
	"testing"
	"time"
)

// watchedPair is a loopback connection, its client end and freshet's.
func watchedPair(t *testing.T) (client, server net.Conn) {
	server, client = tcpPair(t)
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client, server
}

// watched watches server's client, with gone closed when it hangs up.
func watched(server net.Conn) (gone chan struct{}, stop func()) {
	gone = make(chan struct{})
	return gone, watchClient(server, func() { close(gone) })
}

func TestWatchClient(t *testing.T) {
	t.Run("a client that sent a request and stays is not gone, and its request is kept", func(t *testing.T) {
		client, server := watchedPair(t)
		gone, stop := watched(server)
		defer stop()
		if _, err := client.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		select {
		case <-gone:
			t.Fatal("a client still connected was taken as gone")
		case <-time.After(3 * clientGoneEvery):
		}
		buf := make([]byte, 5)
		if _, err := io.ReadFull(server, buf); err != nil || string(buf) != "hello" {
			t.Fatalf("read %q, %v after the watch, want the request", buf, err)
		}
	})
	t.Run("a client that hangs up is gone, even with a request unread", func(t *testing.T) {
		client, server := watchedPair(t)
		gone, stop := watched(server)
		defer stop()
		if _, err := client.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		_ = client.Close()
		select {
		case <-gone:
		case <-time.After(5 * time.Second):
			t.Fatal("a client that hung up was not seen gone")
		}
	})
	t.Run("stop ends the watch", func(t *testing.T) {
		client, server := watchedPair(t)
		gone, stop := watched(server)
		stop()
		stop() // twice is fine
		_ = client.Close()
		select {
		case <-gone:
			t.Fatal("a stopped watch still reported")
		case <-time.After(3 * clientGoneEvery):
		}
	})
}
