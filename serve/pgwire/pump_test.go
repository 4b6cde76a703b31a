package pgwire

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// relay runs one session whose client sends input after startup and
// returns what reached the origin and what the client received.
func relay(t testing.TB, cfg Config, input []byte) (toOrigin, toClient []byte) {
	t.Helper()
	fc := &fakeConnector{}
	cfg.Connector = fc
	if cfg.Mode == TransactionMode {
		cfg.Pool, cfg.Verifiers = fakePool{}, fakeVerifiers{}
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client := newScriptConn(input, false)
	origin, err := fc.Connect(context.Background(), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	startup := &pgproto3.StartupMessage{Parameters: map[string]string{"user": "u"}}
	sess := newSession(srv, client, bufio.NewReaderSize(client, srv.cfg.BufferSize), origin, startup)
	if cfg.Mode == TransactionMode {
		// The greeting's backend is set aside; messages attach new ones.
		sess.tx, sess.released = &txState{startup: startup}, true
	}
	sess.run(context.Background())
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if cfg.Mode == TransactionMode {
		var all []byte
		for _, oc := range fc.origins[1:] {
			all = append(all, oc.written()...)
		}
		return all, client.written()
	}
	return fc.origins[0].written(), client.written()
}

// wholeFrontendMessages checks that b is a sequence of whole frontend
// messages, but for the beginning of a last one larger than bufSize that
// was being streamed when the input ended (Parse, Bind, Describe and
// Close are read whole first, so never one of those).
func wholeFrontendMessages(b []byte, bufSize int) error {
	for len(b) > 0 {
		if len(b) < 5 {
			return fmt.Errorf("%d bytes left, not a message", len(b))
		}
		typ, n := b[0], int(int32(binary.BigEndian.Uint32(b[1:])))
		if !frontendTypes[typ] || n < 4 {
			return fmt.Errorf("message %q of length %d", typ, n)
		}
		if n+1 > len(b) {
			if n+1 > bufSize && !bytes.ContainsRune([]byte("PBDC"), rune(typ)) {
				return nil
			}
			return fmt.Errorf("message %q of length %d with %d bytes left", typ, n, len(b))
		}
		b = b[n+1:]
	}
	return nil
}

// expectedForward is the oracle: the longest prefix of input made of whole
// valid frontend messages, stopping after a Terminate; and whether the
// input broke the protocol (rather than ending or terminating).
//
// A message too large for the read buffer is streamed, so when the input
// ends inside one, its beginning has already gone to the origin (which
// discards it with the closed connection).
func expectedForward(input []byte, maxMsg, bufSize int) (prefix []byte, violation bool) {
	i := 0
	for {
		if len(input)-i < 5 {
			return input[:i], false
		}
		typ, n := input[i], int(int32(binary.BigEndian.Uint32(input[i+1:])))
		if !frontendTypes[typ] || n < 4 || n+1 > maxMsg {
			return input[:i], true
		}
		if typ == 'X' {
			return input[:i], false
		}
		if len(input)-i < n+1 {
			if n+1 > bufSize {
				return input, false
			}
			return input[:i], false
		}
		i += n + 1
	}
}

func msg(typ byte, body string) []byte {
	b := []byte{typ, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[1:], uint32(len(body)+4))
	return append(b, body...)
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func lastErrorCode(t testing.TB, b []byte) string {
	t.Helper()
	code := ""
	for len(b) >= 5 {
		n := int(binary.BigEndian.Uint32(b[1:]))
		if b[0] == 'E' {
			var e pgproto3.ErrorResponse
			if err := e.Decode(b[5 : n+1]); err != nil {
				t.Fatalf("undecodable ErrorResponse: %v", err)
			}
			code = e.Code
		}
		b = b[n+1:]
	}
	return code
}

func TestPumpClient(t *testing.T) {
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
		{name: "length below 4", input: []byte{'S', 0, 0, 0, 3}, wantCode: CodeProtocolViolation},
		{name: "oversized message", input: msg('Q', string(big)), maxMsg: 1024, wantCode: CodeProtocolViolation},
		{name: "client vanishes mid-message", input: msg('Q', "select 1\x00")[:8]},
		{name: "client vanishes mid-stream", input: msg('d', string(big))[:50000]},
		{name: "startup packet after startup", input: []byte{0, 0, 0, 8, 4, 0xd2, 0x16, 0x2f}, wantCode: CodeProtocolViolation},
	}
	for _, tt := range tests {
		for _, mode := range []Mode{SessionMode, TransactionMode} {
			t.Run(fmt.Sprintf("%s/mode %d", tt.name, mode), func(t *testing.T) {
				cfg := Config{MaxMessageSize: tt.maxMsg, Mode: mode}
				toOrigin, toClient := relay(t, cfg, tt.input)
				maxMsg := tt.maxMsg
				if maxMsg == 0 {
					maxMsg = DefaultMaxMessageSize
				}
				want, violation := expectedForward(tt.input, maxMsg, DefaultBufferSize)
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

// FuzzMessageLoop drives the client side of the relay with random
// frontend messages: it must never panic, must forward exactly the valid
// prefix, and must answer a protocol violation with 08P01.
func FuzzMessageLoop(f *testing.F) {
	f.Add(cat(msg('Q', "select 1\x00"), msg('X', "")))
	f.Add(cat(msg('P', "s\x00select 1\x00\x00\x00"), msg('B', "p\x00s\x00\x00\x00\x00\x00\x00\x00"), msg('D', "Pp\x00"), msg('E', "p\x00\x00\x00\x00\x01"), msg('S', "")))
	f.Add(cat(msg('Q', "copy t from stdin\x00"), msg('d', "1\t2\n"), msg('c', "")))
	f.Add(cat(msg('F', "\x00\x00\x00\x01\x00\x00\x00\x00\x00\x00"), msg('f', "err\x00")))
	f.Add([]byte{'Q', 0x7f, 0xff, 0xff, 0xff})
	f.Add([]byte{'?', 0, 0, 0, 4})
	f.Fuzz(func(t *testing.T, input []byte) {
		const maxMsg = 4096
		for _, mode := range []Mode{SessionMode, TransactionMode} {
			fuzzRelay(t, mode, maxMsg, input)
		}
	})
}

func fuzzRelay(t *testing.T, mode Mode, maxMsg int, input []byte) {
	{
		toOrigin, toClient := relay(t, Config{MaxMessageSize: maxMsg, BufferSize: 512, Mode: mode}, input)
		want, violation := expectedForward(input, maxMsg, 512)
		if mode == TransactionMode {
			// Named statements are renamed for the backends, and Parse,
			// Bind, Describe and Close are read whole before they go:
			// what goes is whole frontend messages.
			if err := wholeFrontendMessages(toOrigin, 512); err != nil {
				t.Fatalf("forwarded %q: %v", toOrigin, err)
			}
		} else if !bytes.Equal(toOrigin, want) {
			t.Fatalf("forwarded %q, want %q", toOrigin, want)
		}
		code := lastErrorCode(t, toClient)
		if violation && code != CodeProtocolViolation {
			t.Fatalf("protocol violation answered %q", code)
		}
		if !violation && code != "" {
			t.Fatalf("valid input answered %q", code)
		}
	}
}
