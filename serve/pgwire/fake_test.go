package pgwire

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"time"

	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/materialize/cache"
	"github.com/jackc/pgx/v5/pgproto3"
)

// scriptConn is a net.Conn whose reads come from a fixed input and whose
// writes are recorded. When the input is exhausted, reads block until
// Close if hold is set, else return io.EOF.
type scriptConn struct {
	mu     sync.Mutex
	in     *bytes.Reader
	out    bytes.Buffer
	hold   bool
	closed chan struct{}
	once   sync.Once
}

func newScriptConn(in []byte, hold bool) *scriptConn {
	return &scriptConn{in: bytes.NewReader(in), hold: hold, closed: make(chan struct{})}
}

func (c *scriptConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	n, err := c.in.Read(p)
	c.mu.Unlock()
	if n > 0 || !c.hold {
		return n, err
	}
	<-c.closed
	return 0, net.ErrClosed
}

func (c *scriptConn) Write(p []byte) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.Write(p)
}

func (c *scriptConn) written() []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]byte(nil), c.out.Bytes()...)
}

func (c *scriptConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }

// fakeConnector hands out a silent origin that records what it is sent.
// With md5 set it first asks the client for an md5 password, and refuses
// any answer but "md5ok".
type fakeConnector struct {
	md5     bool
	mu      sync.Mutex
	origins []*scriptConn
	cancels int
}

func (f *fakeConnector) Connect(ctx context.Context, startup *pgproto3.StartupMessage, client ClientAuth) (*OriginConn, error) {
	if f.md5 {
		answer, err := client.Exchange(ctx, &pgproto3.AuthenticationMD5Password{Salt: [4]byte{1, 2, 3, 4}}, true)
		if err != nil {
			return nil, err
		}
		if string(bytes.TrimRight(answer, "\x00")) != "md5ok" {
			return nil, &OriginError{Response: pgproto3.ErrorResponse{Severity: "FATAL", Code: "28P01", Message: "password authentication failed"}}
		}
	}
	oc := newScriptConn(nil, true)
	f.mu.Lock()
	f.origins = append(f.origins, oc)
	f.mu.Unlock()
	return &OriginConn{Conn: oc, Reader: bufio.NewReader(oc), Key: BackendKey{ProcessID: 7, SecretKey: []byte{1, 2, 3, 4}},
		Greeting: []byte{'S', 0, 0, 0, 8, 'a', 0, 'b', 0}, TxStatus: 'I'}, nil
}

func (f *fakeConnector) Cancel(context.Context, BackendKey) error {
	f.mu.Lock()
	f.cancels++
	f.mu.Unlock()
	return nil
}

func (f *fakeConnector) cancelCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.cancels
}

var _ io.ReadWriteCloser = (*scriptConn)(nil)

// fakePool never holds anything: every attach connects anew.
type fakePool struct{}

func (fakePool) Acquire(_ context.Context, _ string, dial func() (*OriginConn, error)) (*OriginConn, error) {
	return dial()
}
func (fakePool) Release(_ context.Context, _ string, oc *OriginConn, _ bool) {
	_ = oc.Conn.Close()
}

type fakeVerifiers struct{}

func (fakeVerifiers) LookupVerifier(context.Context, string) (string, error) { return "", nil }

// fakeCache answers from responses stored by request (statement, shape
// and parameters), fills on a miss, and counts its lookups: full ones
// (Lookup) and non-blocking ones that hit (LookupHit).
type fakeCache struct {
	mu       sync.Mutex
	entries  map[string]*cache.Entry
	tickets  map[*materialize.Ticket]string
	lookups  int // Lookup calls
	loopHits int // LookupHit calls that hit
	noHits   bool
}

func newFakeCache() *fakeCache {
	return &fakeCache{entries: map[string]*cache.Entry{}, tickets: map[*materialize.Ticket]string{}}
}

func fakeKey(r *materialize.Request) string {
	k := r.SQL + "|" + r.Shape
	for _, v := range r.Params.Values {
		k += "|" + string(v)
	}
	return k
}

func (f *fakeCache) Lookup(_ context.Context, r *materialize.Request, key []byte) (materialize.Answer, []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lookups++
	r.FencePending = false
	k := fakeKey(r)
	if e := f.entries[k]; e != nil {
		return materialize.Answer{Entry: e, Cacheable: true, ReadOnly: true}, key
	}
	tk := &materialize.Ticket{}
	f.tickets[tk] = k
	return materialize.Answer{Ticket: tk, Cacheable: true, ReadOnly: true}, key
}

func (f *fakeCache) LookupHit(r *materialize.Request, key []byte) (*cache.Entry, []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.entries[fakeKey(r)]
	if e == nil || f.noHits || r.FencePending {
		return nil, key
	}
	f.loopHits++
	return e, key
}

func (f *fakeCache) Put(tk *materialize.Ticket, response []byte) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	k, ok := f.tickets[tk]
	delete(f.tickets, tk)
	if ok {
		f.entries[k] = cache.NewEntry([]byte(k), append([]byte(nil), response...), nil)
	}
	return ok
}

func (f *fakeCache) Abandon(tk *materialize.Ticket) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.tickets, tk)
}

// counts returns the lookups and loop hits so far.
func (f *fakeCache) counts() (lookups, loopHits int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookups, f.loopHits
}

func (f *fakeCache) cached(r *materialize.Request) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.entries[fakeKey(r)] != nil
}
