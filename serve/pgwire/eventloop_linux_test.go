//go:build linux

package pgwire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t testing.TB) (near, far *net.TCPConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	a := <-accepted
	if a == nil {
		t.Fatal("accept failed")
	}
	return a.(*net.TCPConn), d.(*net.TCPConn)
}

// loopedSession runs a relayed session over real sockets with the event
// loop on, and returns the test's ends: the client's and the origin's.
// done is closed when the session ended and its client socket closed.
func loopedSession(t testing.TB, cfg Config) (client, origin *net.TCPConn, sess *session, done chan struct{}) {
	t.Helper()
	return runSession(t, cfg, nil, func(sess *session) {
		if ok := sess.loopable(); ok != (cfg.IdleTimeout == 0) {
			t.Fatalf("loopable %v with idle timeout %v", ok, cfg.IdleTimeout)
		}
	})
}

// runSession runs a session of a server with cfg (and a fake connector)
// over real sockets and returns the test's ends: the client's and the
// origin's. prep, when set, sees
// freshet's end of the client connection first; check, when set, sees the
// session before it runs. done is closed when the session ended and its
// client socket closed; the test's end waits for it and closes srv.
func runSession(t testing.TB, cfg Config, prep func(proxyClient *net.TCPConn), check func(*session)) (client, origin *net.TCPConn, sess *session, done chan struct{}) {
	t.Helper()
	cfg.Connector = &fakeConnector{}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	proxyClient, client := tcpPair(t)
	proxyOrigin, origin := tcpPair(t)
	if prep != nil {
		prep(proxyClient)
	}
	oc := &OriginConn{Conn: proxyOrigin, Reader: bufio.NewReader(proxyOrigin), TxStatus: 'I'}
	startup := &pgproto3.StartupMessage{Parameters: map[string]string{"user": "u"}}
	rd := &clientReader{conn: proxyClient}
	sess = newSession(srv, proxyClient, bufio.NewReaderSize(rd, srv.cfg.BufferSize), oc, startup)
	rd.s = sess
	if check != nil {
		check(sess)
	}
	done = make(chan struct{})
	srv.wg.Add(1) // as serveConn's session: Close and Shutdown wait for it
	go func() {
		defer srv.wg.Done()
		defer close(done)
		sess.run(context.Background())
		_ = proxyClient.Close()
	}()
	t.Cleanup(func() {
		_ = client.Close()
		_ = origin.Close()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("session did not end")
		}
		_ = srv.Close()
	})
	return client, origin, sess, done
}

// relayTCP is relay over real sockets: the client sends input and
// half-closes; the origin stays silent.
func relayTCP(t testing.TB, cfg Config, input []byte) (toOrigin, toClient []byte) {
	t.Helper()
	client, origin, _, done := loopedSession(t, cfg)
	fromOrigin := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(origin)
		fromOrigin <- b
	}()
	wrote := make(chan struct{})
	go func() {
		defer close(wrote)
		_, _ = client.Write(input)
		_ = client.CloseWrite()
	}()
	toClient, _ = io.ReadAll(client)
	<-done
	// The input is the caller's again (a fuzzer reuses it) only once the
	// writer is done with it: it fails once the session closed.
	_ = client.Close()
	<-wrote
	return <-fromOrigin, toClient
}

// TestEventLoopClient runs the relay oracle of TestPumpClient over sockets.
func TestEventLoopClient(t *testing.T) {
	big := bytes.Repeat([]byte("x"), 100<<10)
	tests := []struct {
		name     string
		input    []byte
		maxMsg   int
		wantCode string
	}{
		{name: "query then terminate", input: cat(msg('Q', "select 1\x00"), msg('X', ""))},
		{name: "extended pipeline", input: cat(msg('P', "\x00select $1\x00\x00\x00"), msg('B', "\x00\x00\x00\x00\x00\x00\x00\x00"), msg('E', "\x00\x00\x00\x00\x00"), msg('S', ""), msg('H', ""))},
		{name: "message larger than the buffer", input: cat(msg('Q', string(big)+"\x00"), msg('d', string(big)), msg('X', ""))},
		{name: "unknown message type", input: cat(msg('Q', "select 1\x00"), msg('z', "junk")), wantCode: CodeProtocolViolation},
		{name: "negative length", input: cat(msg('Q', "select 1\x00"), []byte{'Q', 0xff, 0xff, 0xff, 0xff}), wantCode: CodeProtocolViolation},
		{name: "oversized message", input: msg('Q', string(big)), maxMsg: 1024, wantCode: CodeProtocolViolation},
		{name: "client vanishes mid-message", input: msg('Q', "select 1\x00")[:8]},
		{name: "client vanishes mid-stream", input: msg('d', string(big))[:50000]},
	}
	for _, tt := range tests {
		for _, bufSize := range []int{DefaultBufferSize, 64} {
			t.Run(fmt.Sprintf("%s/buffer %d", tt.name, bufSize), func(t *testing.T) {
				maxMsg := tt.maxMsg
				if maxMsg == 0 {
					maxMsg = DefaultMaxMessageSize
				}
				toOrigin, toClient := relayTCP(t, Config{MaxMessageSize: tt.maxMsg, BufferSize: bufSize}, tt.input)
				want, violation := expectedForward(tt.input, maxMsg, bufSize)
				if !bytes.Equal(toOrigin, want) {
					t.Fatalf("forwarded %d bytes, want %d", len(toOrigin), len(want))
				}
				if got := lastErrorCode(t, toClient); got != tt.wantCode || violation != (tt.wantCode != "") {
					t.Fatalf("client got SQLSTATE %q (oracle violation %v), want %q", got, violation, tt.wantCode)
				}
			})
		}
	}
}

// readMessages reads whole backend messages from c until it has one of
// type until, failing after a few seconds.
func readMessages(t testing.TB, c net.Conn, until byte) []byte {
	t.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	var out []byte
	for {
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(c, hdr); err != nil {
			t.Fatalf("reading until %q after %q: %v", until, out, err)
		}
		body := make([]byte, int(binary.BigEndian.Uint32(hdr[1:]))-4)
		if _, err := io.ReadFull(c, body); err != nil {
			t.Fatalf("reading until %q: %v", until, err)
		}
		out = append(append(out, hdr...), body...)
		if hdr[0] == until {
			return out
		}
	}
}

func TestEventLoopNotificationWhileIdle(t *testing.T) {
	client, origin, sess, _ := loopedSession(t, Config{})
	query := msg('Q', "listen c\x00")
	if _, err := client.Write(query); err != nil {
		t.Fatal(err)
	}
	if got := readFrontend(t, origin, len(query)); !bytes.Equal(got, query) {
		t.Fatalf("origin got %q", got)
	}
	reply := cat(msg('C', "LISTEN\x00"), msg('Z', "I"))
	if _, err := origin.Write(reply); err != nil {
		t.Fatal(err)
	}
	if got := readMessages(t, client, 'Z'); !bytes.Equal(got, reply) {
		t.Fatalf("client got %q, want %q", got, reply)
	}
	// The relay is idle now, parked without a pending read: a
	// notification must still wake it, each time.
	for i := range 3 {
		time.Sleep(20 * time.Millisecond)
		note := msg('A', fmt.Sprintf("\x00\x00\x00\x07c\x00payload %d\x00", i))
		if _, err := origin.Write(note); err != nil {
			t.Fatal(err)
		}
		if got := readMessages(t, client, 'A'); !bytes.Equal(got, note) {
			t.Fatalf("client got %q, want %q", got, note)
		}
	}
	if sess.busy() {
		t.Fatal("session busy after its only request was answered")
	}
	if !sess.inLoop.Load() {
		t.Fatal("the session did not run in the event loop")
	}
}

// readFrontend reads n bytes the relay forwarded to the origin.
func readFrontend(t testing.TB, origin net.Conn, n int) []byte {
	t.Helper()
	_ = origin.SetReadDeadline(time.Now().Add(5 * time.Second))
	b := make([]byte, n)
	if _, err := io.ReadFull(origin, b); err != nil {
		t.Fatalf("origin read: %v", err)
	}
	return b
}

func TestEventLoopReplyInPieces(t *testing.T) {
	client, origin, _, _ := loopedSession(t, Config{BufferSize: 64})
	req := cat(msg('B', "\x00s\x00\x00\x00\x00\x00\x00\x00"), msg('E', "\x00\x00\x00\x00\x00"), msg('S', ""))
	if _, err := client.Write(req); err != nil {
		t.Fatal(err)
	}
	readFrontend(t, origin, len(req))
	row := msg('D', "\x00\x01\x00\x00\x00\xc8"+string(bytes.Repeat([]byte("r"), 200)))
	reply := cat(msg('2', ""), msg('N', "SNOTICE\x00Mmid-reply notice\x00\x00"), row, msg('C', "SELECT 1\x00"), msg('Z', "I"))
	// Cut the reply everywhere awkward: inside headers, inside a row
	// larger than the relay's buffer.
	for _, cut := range [][2]int{{0, 3}, {3, 9}, {9, 30}, {30, 100}, {100, len(reply)}} {
		if _, err := origin.Write(reply[cut[0]:cut[1]]); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := readMessages(t, client, 'Z'); !bytes.Equal(got, reply) {
		t.Fatalf("client got %q\nwant %q", got, reply)
	}
}

func TestEventLoopPipelined(t *testing.T) {
	client, origin, sess, _ := loopedSession(t, Config{})
	const n = 50
	var reqs []byte
	for i := range n {
		reqs = append(reqs, msg('Q', fmt.Sprintf("select %d\x00", i))...)
	}
	if _, err := client.Write(reqs); err != nil {
		t.Fatal(err)
	}
	got := readFrontend(t, origin, len(reqs))
	if !bytes.Equal(got, reqs) {
		t.Fatal("pipelined requests reached the origin altered")
	}
	var want []byte
	for i := range n {
		reply := cat(msg('T', "\x00\x00"), msg('C', fmt.Sprintf("SELECT %d\x00", i)), msg('Z', "I"))
		want = append(want, reply...)
		if _, err := origin.Write(reply); err != nil {
			t.Fatal(err)
		}
	}
	var all []byte
	for range n {
		all = append(all, readMessages(t, client, 'Z')...)
	}
	if !bytes.Equal(all, want) {
		t.Fatal("replies reached the client altered or out of order")
	}
	if s, r := sess.sent.Load(), sess.ready.Load(); s != n || r != n {
		t.Fatalf("sent %d, ready %d; want %d each", s, r, n)
	}
	if !sess.inLoop.Load() {
		t.Fatal("the session did not run in the event loop")
	}
}

func TestEventLoopIdleTimeout(t *testing.T) {
	client, _, _, done := loopedSession(t, Config{IdleTimeout: 100 * time.Millisecond})
	waitEnded(t, done, "idle session was not ended")
	b, _ := io.ReadAll(client)
	if got := lastErrorCode(t, b); got != CodeIdleSessionTimeout {
		t.Fatalf("client got SQLSTATE %q, want %q", got, CodeIdleSessionTimeout)
	}
}

func TestEventLoopOriginEndsFirst(t *testing.T) {
	client, origin, _, done := loopedSession(t, Config{})
	_ = origin.Close()
	waitEnded(t, done, "session outlived its origin")
	b, _ := io.ReadAll(client)
	if got := lastErrorCode(t, b); got != CodeConnectionFailure {
		t.Fatalf("client got SQLSTATE %q, want %q", got, CodeConnectionFailure)
	}
}

// opaqueConn hides a socket from the event loop, so a session takes the
// bufio pumps.
type opaqueConn struct{ net.Conn }

// BenchmarkRelayRoundTrip measures one extended-protocol round trip
// through a relayed session over loopback TCP, in the event loop and
// with the bufio pumps. cpu-µs/op and reads/op are the whole process's
// (the benchmark's client and origin included, the same for both).
func BenchmarkRelayRoundTrip(b *testing.B) {
	for _, raw := range []bool{true, false} {
		b.Run(fmt.Sprintf("loop=%v", raw), func(b *testing.B) {
			srv, err := New(Config{Connector: &fakeConnector{}})
			if err != nil {
				b.Fatal(err)
			}
			proxyClient, client := tcpPair(b)
			proxyOrigin, origin := tcpPair(b)
			var pc, po net.Conn = proxyClient, proxyOrigin
			if !raw {
				pc, po = opaqueConn{proxyClient}, opaqueConn{proxyOrigin}
			}
			oc := &OriginConn{Conn: po, Reader: bufio.NewReader(po), TxStatus: 'I'}
			startup := &pgproto3.StartupMessage{Parameters: map[string]string{"user": "u"}}
			sess := newSession(srv, pc, bufio.NewReaderSize(pc, srv.cfg.BufferSize), oc, startup)
			done := make(chan struct{})
			go func() { defer close(done); sess.run(context.Background()) }()
			req := cat(msg('B', "\x00s\x00\x00\x00\x00\x01\x00\x00\x00\x0242\x00\x00"), msg('E', "\x00\x00\x00\x00\x00"), msg('S', ""))
			reply := cat(msg('2', ""), msg('D', "\x00\x01\x00\x00\x00\x0542000"), msg('C', "SELECT 1\x00"), msg('Z', "I"))
			go func() {
				in := make([]byte, len(req))
				for {
					if _, err := io.ReadFull(origin, in); err != nil {
						return
					}
					if _, err := origin.Write(reply); err != nil {
						return
					}
				}
			}()
			in := make([]byte, len(reply))
			cpu0, reads0 := processCPU(), processReads()
			b.ResetTimer()
			for b.Loop() {
				if _, err := client.Write(req); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(client, in); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			ops := float64(b.N)
			b.ReportMetric(float64(processCPU()-cpu0)/1e3/ops, "cpu-µs/op")
			b.ReportMetric(float64(processReads()-reads0)/ops, "reads/op")
			_ = client.Close()
			_ = origin.Close()
			<-done
			_ = proxyClient.Close()
			_ = srv.Close()
		})
	}
}

// processCPU is this process's user and system CPU time in ns.
func processCPU() int64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

// processReads is this process's read syscall count.
func processReads() int64 {
	b, _ := os.ReadFile("/proc/self/io")
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "syscr: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// An origin that closes right after ReadyForQuery is noticed by the loop
// (it reads the FIN); the client is told before or at its next request.
func TestEventLoopOriginClosesAfterReady(t *testing.T) {
	client, origin, _, done := loopedSession(t, Config{})
	query := msg('Q', "select 1\x00")
	if _, err := client.Write(query); err != nil {
		t.Fatal(err)
	}
	readFrontend(t, origin, len(query))
	reply := cat(msg('C', "SELECT 1\x00"), msg('Z', "I"))
	_, _ = origin.Write(reply)
	_ = origin.Close()
	if got := readMessages(t, client, 'Z'); !bytes.Equal(got, reply) {
		t.Fatalf("client got %q", got)
	}
	waitEnded(t, done, "session outlived its origin")
	b, _ := io.ReadAll(client)
	if got := lastErrorCode(t, b); got != CodeConnectionFailure {
		t.Fatalf("client got SQLSTATE %q, want %q", got, CodeConnectionFailure)
	}
}

// A client that does not read fills its socket: the loop must keep the
// rest, stop reading the origin, and deliver everything once it reads.
func TestEventLoopSlowClient(t *testing.T) {
	client, origin, _, _ := loopedSession(t, Config{BufferSize: 4096})
	// A small receive buffer makes the loop's writes to the client fail
	// with EAGAIN well before the reply is all sent.
	if err := client.SetReadBuffer(64 << 10); err != nil {
		t.Fatal(err)
	}
	query := msg('Q', "select big\x00")
	if _, err := client.Write(query); err != nil {
		t.Fatal(err)
	}
	readFrontend(t, origin, len(query))
	var reply []byte
	for i := range 20000 {
		reply = append(reply, msg('D', fmt.Sprintf("\x00\x01\x00\x00\x01\x00%0256d", i))...)
	}
	reply = append(reply, cat(msg('C', "SELECT 20000\x00"), msg('Z', "I"))...)
	wrote := make(chan error, 1)
	go func() { _, err := origin.Write(reply); wrote <- err }()
	time.Sleep(100 * time.Millisecond) // the client's socket fills up
	if got := readMessages(t, client, 'Z'); !bytes.Equal(got, reply) {
		t.Fatalf("client got %d bytes, want %d (equal prefix %v)", len(got), len(reply), bytes.HasPrefix(reply, got))
	}
	if err := <-wrote; err != nil {
		t.Fatal(err)
	}
}

// A request with no answer past StatementTimeout is cancelled on the
// origin, from the loop's accounting as from the pumps'.
func TestEventLoopStatementTimeout(t *testing.T) {
	client, origin, sess, _ := loopedSession(t, Config{StatementTimeout: 50 * time.Millisecond})
	query := msg('Q', "select pg_sleep(10)\x00")
	if _, err := client.Write(query); err != nil {
		t.Fatal(err)
	}
	readFrontend(t, origin, len(query))
	fc := sess.srv.cfg.Connector.(*fakeConnector)
	deadline := time.Now().Add(5 * time.Second)
	for {
		fc.mu.Lock()
		n := fc.cancels
		fc.mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("statement timeout sent no cancel")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !sess.inLoop.Load() {
		t.Fatal("the session did not run in the event loop")
	}
}

// Close ends sessions the loop holds, cancelling what a busy one runs on
// the origin, as the pumps do.
func TestEventLoopServerClose(t *testing.T) {
	client, origin, sess, done := loopedSession(t, Config{})
	query := msg('Q', "select 1\x00")
	if _, err := client.Write(query); err != nil {
		t.Fatal(err)
	}
	readFrontend(t, origin, len(query))
	if !sess.inLoop.Load() {
		t.Fatal("the session did not run in the event loop")
	}
	if cancels := closeServer(t, sess, client, done); cancels != 1 {
		t.Fatalf("%d cancels for the unanswered query, want 1", cancels)
	}
}

// waitEnded fails t unless the session ends within 5 s.
func waitEnded(t *testing.T, done <-chan struct{}, failure string) {
	t.Helper()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal(failure)
	}
}

// closeServer closes the session's Server, checks that the session ends
// and its client connection is closed, and returns how many cancels the
// Server sent the origin.
func closeServer(t *testing.T, sess *session, client net.Conn, done <-chan struct{}) int {
	t.Helper()
	_ = sess.srv.Close()
	waitEnded(t, done, "Close left the session running")
	_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(client); err != nil {
		t.Fatalf("client connection not closed: %v", err)
	}
	fc := sess.srv.cfg.Connector.(*fakeConnector)
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.cancels
}

// FuzzEventLoop is FuzzMessageLoop's oracle over sockets, so the event
// loop's scanner meets the random messages (small buffer: large messages
// stream through it).
func FuzzEventLoop(f *testing.F) {
	f.Add(cat(msg('Q', "select 1\x00"), msg('X', "")))
	f.Add(cat(msg('Q', "copy t from stdin\x00"), msg('d', "1\t2\n"), msg('c', "")))
	f.Add(cat(msg('d', string(bytes.Repeat([]byte("x"), 300))), msg('S', "")))
	f.Add([]byte{'Q', 0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, input []byte) {
		const maxMsg, bufSize = 4096, 64
		toOrigin, toClient := relayTCP(t, Config{MaxMessageSize: maxMsg, BufferSize: bufSize}, input)
		want, violation := expectedForward(input, maxMsg, bufSize)
		if !bytes.Equal(toOrigin, want) {
			t.Fatalf("forwarded %q, want %q", toOrigin, want)
		}
		code := lastErrorCode(t, toClient)
		if violation != (code == CodeProtocolViolation) || (!violation && code != "") {
			t.Fatalf("violation %v answered %q", violation, code)
		}
	})
}
