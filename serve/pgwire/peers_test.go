package pgwire

import (
	"context"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestKeysCarryThePeerID(t *testing.T) {
	for _, id := range []int{1, 2, 77, MaxPeerID} {
		r := newKeyRegistry(id)
		for range 100 {
			s := &session{}
			r.add(s)
			if s.pid == 0 || s.pid > 0x7fffffff || peerOf(s.pid) != id {
				t.Fatalf("peer %d: process id %#x (peer %d), want a positive one of peer %d", id, s.pid, peerOf(s.pid), id)
			}
		}
	}
	r := newKeyRegistry(0)
	peers := map[int]bool{}
	for range 200 {
		s := &session{}
		r.add(s)
		peers[peerOf(s.pid)] = true
	}
	if len(peers) < 50 {
		t.Errorf("without a peer id the process ids' top bits took %d values of 256: not random", len(peers))
	}
}

func TestValidatePeers(t *testing.T) {
	for _, tc := range []struct {
		name  string
		id    int
		peers map[int]string
		ok    bool
	}{
		{"no peers", 0, nil, true},
		{"an id alone", 3, nil, true},
		{"peers with this one listed", 1, map[int]string{1: "a:1", 2: "b:2"}, true},
		{"peers without an id", 0, map[int]string{2: "b:2"}, false},
		{"id too large", MaxPeerID + 1, nil, false},
		{"negative id", -1, nil, false},
		{"peer id zero", 1, map[int]string{0: "b:2"}, false},
		{"address without a port", 1, map[int]string{2: "b"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := ValidatePeers(tc.id, tc.peers); (err == nil) != tc.ok {
				t.Fatalf("ValidatePeers(%d, %v) = %v, want ok %v", tc.id, tc.peers, err, tc.ok)
			}
		})
	}
}

// A CancelRequest for another peer's key goes to that peer as a
// forwarded cancel with the same key; a forwarded cancel is only looked
// up, never passed on, so peers whose lists disagree cannot loop.
func TestCancelForwardedToItsPeer(t *testing.T) {
	peer, got := cancelRecorder(t)
	reg := prometheus.NewRegistry()
	srv, err := New(Config{Connector: &fakeConnector{}, PeerID: 1, Peers: map[int]string{1: "127.0.0.1:1", 2: peer}, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	addr := serve(t, srv)
	pid, secret := withPeer(0x1234567, 2), []byte{1, 2, 3, 4}

	sendCancel(t, addr, codeCancelRequest, pid, secret)
	select {
	case m := <-got:
		if code, p := binary.BigEndian.Uint32(m[4:]), binary.BigEndian.Uint32(m[8:]); len(m) != 16 || code != codePeerCancel || p != pid || string(m[12:]) != string(secret) {
			t.Fatalf("the peer got %x, want a forwarded cancel of pid %#x", m, pid)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the cancel was not forwarded to its peer")
	}

	sendCancel(t, addr, codePeerCancel, pid, secret)
	select {
	case m := <-got:
		t.Fatalf("a forwarded cancel was forwarded again: %x", m)
	case <-time.After(200 * time.Millisecond):
	}
	sendCancel(t, addr, codeCancelRequest, withPeer(5, 3), secret) // a peer not listed
	for outcome, want := range map[string]float64{"peer": 1, "unknown": 2, "local": 0, "peer_failed": 0} {
		if n := testutil.ToFloat64(srv.metrics.cancels.WithLabelValues(outcome)); n != want {
			t.Errorf("cancel requests %s: %v, want %v", outcome, n, want)
		}
	}
}

// A peer that cannot be reached is counted, and the client's cancel
// connection is still closed.
func TestCancelToAPeerThatIsDown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	_ = ln.Close()
	srv, err := New(Config{Connector: &fakeConnector{}, PeerID: 1, Peers: map[int]string{2: down}})
	if err != nil {
		t.Fatal(err)
	}
	sendCancel(t, serve(t, srv), codeCancelRequest, withPeer(9, 2), []byte{1, 2, 3, 4})
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(srv.metrics.cancels.WithLabelValues("peer_failed")) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the failed forward was not counted")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// cancelRecorder listens as a peer and hands over each message it gets.
func cancelRecorder(t *testing.T) (string, <-chan []byte) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	got := make(chan []byte, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			m, _ := io.ReadAll(io.LimitReader(c, 16))
			_ = c.Close()
			got <- m
		}
	}()
	return ln.Addr().String(), got
}

func serve(t *testing.T, srv *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(context.Background(), ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return ln.Addr().String()
}

// sendCancel sends a cancel request and waits for the server to close
// the connection, as libpq does.
func sendCancel(t *testing.T, addr string, code, pid uint32, secret []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	m := binary.BigEndian.AppendUint32(nil, uint32(12+len(secret)))
	m = binary.BigEndian.AppendUint32(m, code)
	m = binary.BigEndian.AppendUint32(m, pid)
	if _, err := c.Write(append(m, secret...)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("waiting for the cancel connection to close: %v", err)
	}
}
