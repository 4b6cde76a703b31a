package postgres

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// answerSSLRequest listens on loopback and answers each connection's
// SSLRequest with answer, then keeps the connection open until the test
// ends.
func answerSSLRequest(t *testing.T, answer byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() })
			var req [8]byte
			if _, err := io.ReadFull(c, req[:]); err == nil {
				_, _ = c.Write([]byte{answer})
			}
		}
	}()
	return ln.Addr().String()
}

// TestOriginTLSOptional: an origin without TLS ('N') is used in plaintext
// only when TLS is optional (sslmode=prefer); otherwise the connection
// fails rather than go on in plaintext.
func TestOriginTLSOptional(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	addr := answerSSLRequest(t, 'N')
	for _, tt := range []struct {
		name     string
		optional bool
	}{{"prefer", true}, {"require", false}} {
		t.Run(tt.name, func(t *testing.T) {
			o, err := NewOrigin(OriginConfig{Addr: addr, TLS: &tls.Config{InsecureSkipVerify: true}, TLSOptional: tt.optional})
			if err != nil {
				t.Fatal(err)
			}
			conn, _, err := o.dial(ctx)
			if !tt.optional {
				if err == nil || !strings.Contains(err.Error(), "refused TLS") {
					t.Fatalf("dial: %v, want the origin's refusal", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, isTLS := conn.(*tls.Conn); isTLS {
				t.Fatal("a TLS connection to an origin that has none")
			}
		})
	}
}

// TestOriginDialFallsBack: the hosts are tried in order; the first that
// can be reached and does TLS as asked is used, and its address reported
// (cancels go there). When none will do, the error names each.
func TestOriginDialFallsBack(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	_ = ln.Close()
	refuses, plain := answerSSLRequest(t, 'N'), answerSSLRequest(t, 'N')
	anyTLS := &tls.Config{InsecureSkipVerify: true}
	o, err := NewOrigin(OriginConfig{Addr: dead, TLS: anyTLS, Fallbacks: []OriginHost{
		{Addr: refuses, TLS: anyTLS}, {Addr: plain, TLS: anyTLS, TLSOptional: true}}})
	if err != nil {
		t.Fatal(err)
	}
	conn, host, err := o.dial(ctx)
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
	if host != plain {
		t.Fatalf("dialled %s, want %s (the first host that will do)", host, plain)
	}
	none, err := NewOrigin(OriginConfig{Addr: dead, Fallbacks: []OriginHost{{Addr: refuses, TLS: anyTLS}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := none.dial(ctx); err == nil || !strings.Contains(err.Error(), dead) || !strings.Contains(err.Error(), refuses) {
		t.Fatalf("dial with no host that will do: %v, want an error naming both", err)
	}
}
