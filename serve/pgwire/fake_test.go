package pgwire

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"sync"
	"time"

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

var _ io.ReadWriteCloser = (*scriptConn)(nil)

// fakePool never holds anything: every attach connects anew.
type fakePool struct{}

func (fakePool) Acquire(context.Context, string) *OriginConn { return nil }
func (fakePool) Release(_ context.Context, _ string, oc *OriginConn, _ bool) {
	_ = oc.Conn.Close()
}

type fakeVerifiers struct{}

func (fakeVerifiers) LookupVerifier(context.Context, string) (string, error) { return "", nil }
