//go:build linux

package pgwire

import (
	"bytes"
	"errors"
	"io"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/freshetdb/freshet/materialize"
)

// cachedSession runs a cached session over real sockets with the event
// loop on: the test's ends are the client's and the origin's. prep, when
// set, sees freshet's end of the client connection first.
func cachedSession(t testing.TB, cfg Config, fc *fakeCache, prep func(proxyClient *net.TCPConn)) (client, origin *net.TCPConn, sess *session, done chan struct{}) {
	t.Helper()
	cfg.Cache = fc
	return runSession(t, cfg, prep, nil)
}

func pointQuery(id string) []byte { return msg('Q', "SELECT v FROM t WHERE id = "+id+"\x00") }

func pointRequest(id string) *materialize.Request {
	return &materialize.Request{SQL: "SELECT v FROM t WHERE id = " + id}
}

// rowResponse is an origin's answer of rows (each a one-column DataRow).
func rowResponse(rows ...string) []byte {
	var b []byte
	for _, v := range rows {
		b = append(b, msg('D', "\x00\x01"+string([]byte{byte(len(v) >> 24), byte(len(v) >> 16), byte(len(v) >> 8), byte(len(v))})+v)...)
	}
	return cat(b, msg('C', "SELECT 1\x00"), msg('Z', "I"))
}

// ask sends req and reads the response up to ReadyForQuery; want, if
// set, is what it must be.
func ask(t testing.TB, client net.Conn, req, want []byte) []byte {
	t.Helper()
	if _, err := client.Write(req); err != nil {
		t.Fatal(err)
	}
	got := readMessages(t, client, 'Z')
	if want != nil && !bytes.Equal(got, want) {
		t.Fatalf("client got %q, want %q", got, want)
	}
	return got
}

// fill sends req through to the origin, which answers resp, and waits
// for the session to record it.
func fill(t testing.TB, sess *session, client, origin net.Conn, req, resp []byte) {
	t.Helper()
	answered(t, client, origin, req, resp)
	settle(t, sess)
}

// answered sends req through to the origin, which answers resp.
func answered(t testing.TB, client, origin net.Conn, req, resp []byte) {
	t.Helper()
	if _, err := client.Write(req); err != nil {
		t.Fatal(err)
	}
	if got := readFrontend(t, origin, len(req)); !bytes.Equal(got, req) {
		t.Fatalf("origin got %q, want %q", got, req)
	}
	go func() { _, _ = origin.Write(resp) }() // a large one fills the sockets
	if got := readMessages(t, client, 'Z'); !bytes.Equal(got, resp) {
		t.Fatalf("client got %q, want %q", got, resp)
	}
}

// waitParks waits until the server parked sessions n times.
func waitParks(t testing.TB, sess *session, n int64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for sess.srv.loopStats.parks.Load() < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d parks, want %d", sess.srv.loopStats.parks.Load(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// settle waits until the origin pump recorded its flush of the last
// answer: the client may read it first, and a request the pumps see
// before is not offered to the cache (cacheIdle waits only 5ms for it,
// which a loaded machine may exceed).
func settle(t testing.TB, sess *session) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for sess.cache.flushed.Load() != sess.ready.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the origin pump never recorded its flush")
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// warmParked fills id's point query, hits it twice through the pumps and
// waits for the session to be parked.
func warmParked(t testing.TB, client, origin net.Conn, sess *session, id string) []byte {
	t.Helper()
	resp := rowResponse("v" + id)
	parks := sess.srv.loopStats.parks.Load()
	fill(t, sess, client, origin, pointQuery(id), resp)
	for range minParkHits {
		ask(t, client, pointQuery(id), resp)
	}
	waitParks(t, sess, parks+1)
	return resp
}

func TestLoopHitsSimpleQuery(t *testing.T) {
	fc := newFakeCache()
	client, origin, sess, _ := cachedSession(t, Config{}, fc, nil)
	resp := warmParked(t, client, origin, sess, "1")
	if lookups, _ := fc.counts(); lookups != 1+minParkHits {
		t.Fatalf("%d lookups before parking, want %d", lookups, 1+minParkHits)
	}
	for range 5 {
		ask(t, client, pointQuery("1"), resp)
	}
	// Pipelined: three requests in one write, three answers in order.
	if _, err := client.Write(cat(pointQuery("1"), pointQuery("1"), pointQuery("1"))); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if got := readMessages(t, client, 'Z'); !bytes.Equal(got, resp) {
			t.Fatalf("pipelined answer %q", got)
		}
	}
	lookups, loopHits := fc.counts()
	if lookups != 1+minParkHits || loopHits != 8 {
		t.Fatalf("%d full lookups and %d loop hits, want %d and 8: hits went through the pumps", lookups, loopHits, 1+minParkHits)
	}
	if sess.srv.loopStats.handBacks.Load() != 0 {
		t.Fatal("handed back without reason")
	}
}

func TestLoopHitsExtended(t *testing.T) {
	fc := newFakeCache()
	client, origin, sess, _ := cachedSession(t, Config{}, fc, nil)
	parse := cat(msg('P', "s1\x00SELECT v FROM t WHERE id = $1\x00\x00\x00"), msg('S', ""))
	fill(t, sess, client, origin, parse, cat(msg('1', ""), msg('Z', "I")))
	bind := func(v string) []byte {
		return cat(msg('B', "\x00s1\x00\x00\x00\x00\x01\x00\x00\x00\x01"+v+"\x00\x00"), msg('E', "\x00\x00\x00\x00\x00"), msg('S', ""))
	}
	resp := cat(msg('2', ""), rowResponse("x"))
	fill(t, sess, client, origin, bind("1"), resp)
	ask(t, client, bind("1"), resp)
	ask(t, client, bind("1"), resp)
	waitParks(t, sess, 1)
	for range 4 {
		ask(t, client, bind("1"), resp)
	}
	if _, loopHits := fc.counts(); loopHits != 4 {
		t.Fatalf("%d loop hits, want 4", loopHits)
	}
	// A statement the loop does not know: handed back, relayed.
	other := cat(msg('B', "\x00nope\x00\x00\x00\x00\x00\x00\x00"), msg('E', "\x00\x00\x00\x00\x00"), msg('S', ""))
	fill(t, sess, client, origin, other, cat(msg('E', "SERROR\x00C26000\x00Mno such statement\x00\x00"), msg('Z', "I")))
	if sess.srv.loopStats.handBacks.Load() != 1 {
		t.Fatalf("%d hand-backs, want 1", sess.srv.loopStats.handBacks.Load())
	}
}

// Unnamed Parse-Bind-Execute-Sync hits are answered in the loop too; the
// Parse they kept from the origin is restored when a Bind alone needs it.
func TestLoopHitsUnnamedParse(t *testing.T) {
	fc := newFakeCache()
	client, origin, sess, _ := cachedSession(t, Config{}, fc, nil)
	parse := msg('P', "\x00SELECT v FROM t WHERE id = $1\x00\x00\x01\x00\x00\x00\x17")
	bindExec := cat(msg('B', "\x00\x00\x00\x00\x00\x01\x00\x00\x00\x011\x00\x00"), msg('E', "\x00\x00\x00\x00\x00"), msg('S', ""))
	req := cat(parse, bindExec)
	rows := rowResponse("x")
	resp := cat(msg('1', ""), msg('2', ""), rows)
	fill(t, sess, client, origin, req, resp)
	for range minParkHits {
		ask(t, client, req, resp)
	}
	waitParks(t, sess, 1)
	for range 3 {
		ask(t, client, req, resp)
	}
	if lookups, loopHits := fc.counts(); lookups != 1+minParkHits || loopHits != 3 {
		t.Fatalf("%d full lookups and %d loop hits, want %d and 3", lookups, loopHits, 1+minParkHits)
	}
	// A Bind alone of the unnamed statement: handed back, and the pumps
	// send the kept Parse ahead of it, swallowing its ParseComplete.
	fc.mu.Lock()
	fc.noHits = true
	fc.mu.Unlock()
	if _, err := client.Write(bindExec); err != nil {
		t.Fatal(err)
	}
	if got := readFrontend(t, origin, len(req)); !bytes.Equal(got, req) {
		t.Fatalf("origin got %q, want the Parse restored ahead of %q", got, bindExec)
	}
	if _, err := origin.Write(resp); err != nil {
		t.Fatal(err)
	}
	if got := readMessages(t, client, 'Z'); !bytes.Equal(got, cat(msg('2', ""), rows)) {
		t.Fatalf("client got %q", got)
	}
}

// A miss after hits goes back to the pumps, which ask the origin and
// fill; the full lookup counts it once.
func TestLoopMissHandsBack(t *testing.T) {
	fc := newFakeCache()
	client, origin, sess, _ := cachedSession(t, Config{}, fc, nil)
	resp1 := warmParked(t, client, origin, sess, "1")
	resp2 := rowResponse("v2")
	// A hit and a miss in one write: the loop answers the first.
	if _, err := client.Write(cat(pointQuery("1"), pointQuery("2"))); err != nil {
		t.Fatal(err)
	}
	if got := readMessages(t, client, 'Z'); !bytes.Equal(got, resp1) {
		t.Fatalf("client got %q", got)
	}
	if got := readFrontend(t, origin, len(pointQuery("2"))); !bytes.Equal(got, pointQuery("2")) {
		t.Fatalf("origin got %q", got)
	}
	if _, err := origin.Write(resp2); err != nil {
		t.Fatal(err)
	}
	if got := readMessages(t, client, 'Z'); !bytes.Equal(got, resp2) {
		t.Fatalf("client got %q", got)
	}
	settle(t, sess)
	if !fc.cached(pointRequest("2")) {
		t.Fatal("the miss was not filled")
	}
	lookups, loopHits := fc.counts()
	if lookups != 1+minParkHits+1 || loopHits != 1 {
		t.Fatalf("%d full lookups and %d loop hits, want %d and 1", lookups, loopHits, 1+minParkHits+1)
	}
	if sess.srv.loopStats.handBacks.Load() != 1 {
		t.Fatalf("%d hand-backs, want 1", sess.srv.loopStats.handBacks.Load())
	}
	// The short stint raised the bar: more pump hits before parking again.
	for range 2 * minParkHits {
		ask(t, client, pointQuery("2"), resp2)
	}
	waitParks(t, sess, 2)
	ask(t, client, pointQuery("2"), resp2)
	if _, loopHits := fc.counts(); loopHits != 2 {
		t.Fatalf("%d loop hits, want 2", loopHits)
	}
}

// A write ends the loop stint, and the fence it leaves keeps the next read
// from the loop: the pumps' full lookup resolves it.
func TestLoopWriteHandsBack(t *testing.T) {
	fc := newFakeCache()
	client, origin, sess, _ := cachedSession(t, Config{}, fc, nil)
	resp := warmParked(t, client, origin, sess, "1")
	write := msg('Q', "UPDATE t SET v = 'w' WHERE id = 1\x00")
	fill(t, sess, client, origin, write, cat(msg('C', "UPDATE 1\x00"), msg('Z', "I")))
	before, _ := fc.counts()
	ask(t, client, pointQuery("1"), resp)
	if after, _ := fc.counts(); after != before+1 {
		t.Fatal("the read after the write did not go through the full lookup")
	}
}

// A response larger than the socket takes is written as the client
// reads it, and the loop goes on afterwards.
func TestLoopHitPartialWrite(t *testing.T) {
	fc := newFakeCache()
	client, origin, sess, _ := cachedSession(t, Config{}, fc, nil)
	rows := make([]string, 512)
	for i := range rows {
		rows[i] = strings.Repeat(string(rune('a'+i%26)), 8000)
	}
	big := rowResponse(rows...)
	fill(t, sess, client, origin, pointQuery("1"), big)
	ask(t, client, pointQuery("1"), big)
	ask(t, client, pointQuery("1"), big)
	waitParks(t, sess, 1)
	if _, err := client.Write(cat(pointQuery("1"), pointQuery("1"))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // let the loop fill the socket
	r := &slowReader{c: client}
	for range 2 {
		if got := readMessages(t, r, 'Z'); !bytes.Equal(got, big) {
			t.Fatalf("got %d bytes, want the %d of the response", len(got), len(big))
		}
	}
	if _, loopHits := fc.counts(); loopHits != 2 {
		t.Fatalf("%d loop hits, want 2", loopHits)
	}
	if sess.srv.loopStats.writeStalls.Load() == 0 {
		t.Fatal("the client never filled: nothing was written in parts")
	}
	ask(t, client, pointQuery("1"), big)
}

// slowReader reads a little at a time.
type slowReader struct {
	net.Conn
	c     net.Conn
	reads int
}

func (s *slowReader) Read(p []byte) (int, error) {
	s.reads++
	if s.reads%64 == 0 {
		time.Sleep(time.Millisecond)
	}
	return s.c.Read(p[:min(len(p), 1000)])
}

func (s *slowReader) SetReadDeadline(d time.Time) error { return s.c.SetReadDeadline(d) }

func TestLoopShutdownWhileParked(t *testing.T) {
	fc := newFakeCache()
	client, origin, sess, done := cachedSession(t, Config{}, fc, nil)
	warmParked(t, client, origin, sess, "1")
	if cancels := closeServer(t, sess, client, done); cancels != 0 {
		t.Fatalf("%d cancels for an idle session", cancels)
	}
}

func TestLoopClientClosesWhileParked(t *testing.T) {
	fc := newFakeCache()
	client, origin, sess, done := cachedSession(t, Config{}, fc, nil)
	warmParked(t, client, origin, sess, "1")
	_ = client.Close()
	waitEnded(t, done, "the parked session outlived its client")
	_ = origin.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(origin); err != nil {
		t.Fatalf("origin connection not closed: %v", err)
	}
}

// What the origin says while the session is parked reaches the client
// through the pumps; a ParameterStatus the key does not follow then keeps
// reads off the cache.
func TestLoopOriginSpeaksWhileParked(t *testing.T) {
	fc := newFakeCache()
	client, origin, sess, _ := cachedSession(t, Config{}, fc, nil)
	resp := warmParked(t, client, origin, sess, "1")
	notify := msg('A', "\x00\x00\x00\x07chan\x00payload\x00")
	if _, err := origin.Write(notify); err != nil {
		t.Fatal(err)
	}
	if got := readMessages(t, client, 'A'); !bytes.Equal(got, notify) {
		t.Fatalf("client got %q, want the notification", got)
	}
	ask(t, client, pointQuery("1"), resp)
	status := msg('S', "session_authorization\x00mallory\x00")
	if _, err := origin.Write(status); err != nil {
		t.Fatal(err)
	}
	if got := readMessages(t, client, 'S'); !bytes.Equal(got, status) {
		t.Fatalf("client got %q, want the parameter status", got)
	}
	fill(t, sess, client, origin, pointQuery("1"), rowResponse("fresh"))
	if n := sess.srv.loopStats.handBacks.Load(); n < 1 {
		t.Fatalf("%d hand-backs", n)
	}
}

// FuzzParkedSession drives random client bytes at a parked session: the
// leading hits are answered in order, and the session always ends.
func FuzzParkedSession(f *testing.F) {
	q := pointQuery("1")
	f.Add(cat(q, q))
	f.Add(cat(q, msg('X', "")))
	f.Add(cat(q, q[:7]))
	f.Add(cat(msg('B', "\x00s1\x00\x00\x00\x00\x00\x00\x00"), msg('E', "\x00\x00\x00\x00\x00"), msg('S', "")))
	f.Add(cat(q, []byte{'Q', 0x7f, 0xff, 0xff, 0xff}))
	f.Add(cat(msg('Q', "SELECT 1; SELECT 2\x00"), q))
	f.Add(cat(msg('P', "\x00SELECT v FROM t WHERE id = 1\x00\x00\x00"), msg('B', "\x00\x00\x00\x00\x00\x00\x00\x00"), msg('E', "\x00\x00\x00\x00\x00"), msg('S', "")))
	f.Fuzz(func(t *testing.T, input []byte) {
		fc := newFakeCache()
		client, origin, sess, done := cachedSession(t, Config{BufferSize: 64, MaxMessageSize: 4096}, fc, nil)
		resp := warmParked(t, client, origin, sess, "1")
		go func() { _, _ = io.Copy(io.Discard, origin) }()
		wrote := make(chan struct{})
		go func() {
			defer close(wrote)
			_, _ = client.Write(input)
			_ = client.CloseWrite()
		}()
		_ = client.SetReadDeadline(time.Now().Add(10 * time.Second))
		// A reset (the session closed on bytes it had not read) may
		// discard what the client had not read yet.
		got, err := io.ReadAll(client)
		reset := errors.Is(err, syscall.ECONNRESET)
		if err != nil && !reset {
			t.Fatalf("client read: %v", err)
		}
		waitEnded(t, done, "session did not end")
		_ = client.Close()
		<-wrote
		lead := 0
		for rest := input; bytes.HasPrefix(rest, q); rest = rest[len(q):] {
			lead++
		}
		if want := bytes.Repeat(resp, lead); !reset && !bytes.HasPrefix(got, want) {
			t.Fatalf("%d leading hits answered %q", lead, got)
		}
	})
}
