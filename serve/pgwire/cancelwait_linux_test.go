package pgwire

import (
	"context"
	"encoding/binary"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
)

// FuzzCancelledWaits drives a transaction-pooled session whose every
// request waits for a backend and is cancelled: whatever the client
// sends, the session answers only 57014 errors that end nothing but the
// request (and 08P01 or 54000 for a bad message) and ReadyForQuery,
// never panics, and ends when the client does.
func FuzzCancelledWaits(f *testing.F) {
	f.Add(msg('Q', "select 1\x00"))
	f.Add(cat(msg('P', "s\x00select 1\x00\x00\x00"), msg('B', "\x00s\x00\x00\x00\x00\x00\x00\x00"), msg('E', "\x00\x00\x00\x00\x00"), msg('S', ""), msg('Q', "x\x00")))
	f.Add(cat(msg('H', ""), msg('X', "")))
	f.Add(cat(msg('D', "S\x00"), msg('?', ""), msg('S', "")))
	f.Fuzz(func(t *testing.T, input []byte) {
		pool := newFullPool()
		sess, client, done := fullPoolSession(t, pool, input, false)
		for ended := false; !ended; {
			select {
			case <-pool.waiting:
				sess.cancelOrigin(context.Background())
			case <-done:
				ended = true
			case <-time.After(5 * time.Second):
				t.Fatalf("the session neither waited nor ended on %q", input)
			}
		}
		out := client.written()
		for b := out; len(b) > 0; {
			if len(b) < 5 {
				t.Fatalf("a partial message in %q", out)
			}
			n := int(binary.BigEndian.Uint32(b[1:]))
			switch b[0] {
			case 'Z':
			case 'E':
				var e pgproto3.ErrorResponse
				if err := e.Decode(b[5 : n+1]); err != nil || (e.Code != CodeQueryCanceled && e.Code != CodeProtocolViolation && e.Code != CodeProgramLimitExceeded) {
					t.Fatalf("error %+v (%v) in %q", e, err, out)
				}
				if e.Code == CodeQueryCanceled && e.Severity != "ERROR" {
					t.Fatalf("a cancelled wait ended the session: %+v", e)
				}
			default:
				t.Fatalf("message %q in %q: nothing reached a backend", b[0], out)
			}
			b = b[n+1:]
		}
	})
}
