package pgwire

import (
	"context"
	"crypto/pbkdf2"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5/pgproto3"
)

// verifierFor builds the verifier PostgreSQL would store for password.
func verifierFor(t testing.TB, password string) string {
	t.Helper()
	salt := []byte("0123456789abcdef")
	salted, err := pbkdf2.Key(sha256.New, password, salt, 4096, 32)
	if err != nil {
		t.Fatal(err)
	}
	clientKey := hmacSum(salted, "Client Key")
	stored := sha256.Sum256(clientKey)
	serverKey := hmacSum(salted, "Server Key")
	enc := base64.StdEncoding.EncodeToString
	return "SCRAM-SHA-256$" + strconv.Itoa(4096) + ":" + enc(salt) + "$" + enc(stored[:]) + ":" + enc(serverKey)
}

// clientKeyFor is the ClientKey a client derives from password.
func clientKeyFor(t testing.TB, password string) []byte {
	t.Helper()
	salted, err := pbkdf2.Key(sha256.New, password, []byte("0123456789abcdef"), 4096, 32)
	if err != nil {
		t.Fatal(err)
	}
	return hmacSum(salted, "Client Key")
}

// exchange runs scramKeyAuth (as the client, holding key) against
// scramServer (holding v), as an origin would see it.
func exchange(t *testing.T, v SCRAMVerifier, key []byte) ([]byte, error) {
	t.Helper()
	ctx := context.Background()
	client := &scramKeyAuth{user: "u", clientKey: key, serverKey: v.ServerKey}
	srv := &scramServer{v: v}
	p, err := client.Exchange(ctx, &pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}}, true)
	if err != nil {
		return nil, err
	}
	var first pgproto3.SASLInitialResponse
	if err := first.Decode(p); err != nil {
		t.Fatal(err)
	}
	serverFirst, err := srv.first(string(first.Data))
	if err != nil {
		t.Fatal(err)
	}
	p, err = client.Exchange(ctx, &pgproto3.AuthenticationSASLContinue{Data: []byte(serverFirst)}, true)
	if err != nil {
		return nil, err
	}
	var final pgproto3.SASLResponse
	if err := final.Decode(p); err != nil {
		t.Fatal(err)
	}
	serverFinal, recovered, err := srv.final(string(final.Data))
	if err != nil {
		return nil, err
	}
	if _, err := client.Exchange(ctx, &pgproto3.AuthenticationSASLFinal{Data: []byte(serverFinal)}, false); err != nil {
		t.Fatalf("client rejected the server signature: %v", err)
	}
	return recovered, nil
}

func TestSCRAMRoundTrip(t *testing.T) {
	v, err := ParseSCRAMVerifier(verifierFor(t, "secret"))
	if err != nil {
		t.Fatal(err)
	}
	key := clientKeyFor(t, "secret")
	got, err := exchange(t, v, key)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(key) {
		t.Fatal("recovered ClientKey differs from the client's")
	}
	if _, err := exchange(t, v, clientKeyFor(t, "wrong")); !errors.Is(err, errBadProof) {
		t.Fatalf("wrong password: %v, want errBadProof", err)
	}
}

func TestParseSCRAMVerifier(t *testing.T) {
	tests := []struct {
		name string
		in   string
		ok   bool
	}{
		{name: "valid", in: verifierFor(t, "x"), ok: true},
		{name: "md5", in: "md5d41d8cd98f00b204e9800998ecf8427e"},
		{name: "empty", in: ""},
		{name: "no keys", in: "SCRAM-SHA-256$4096:c2FsdA=="},
		{name: "bad iterations", in: "SCRAM-SHA-256$x:c2FsdA==$a:b"},
		{name: "short keys", in: "SCRAM-SHA-256$4096:c2FsdA==$YQ==:YQ=="},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseSCRAMVerifier(tt.in); (err == nil) != tt.ok {
				t.Fatalf("err = %v, want ok %v", err, tt.ok)
			}
		})
	}
}

func FuzzSCRAMServer(f *testing.F) {
	f.Add("SCRAM-SHA-256$4096:MDEyMzQ1Njc4OWFiY2RlZg==$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=", "n,,n=,r=abc", "c=biws,r=abc,p=AAAA")
	f.Add("", "y,,n=u,r=x", "c=eSws,r=x,p=")
	f.Add("", "p=tls-server-end-point,,n=,r=x", "")
	f.Fuzz(func(t *testing.T, verifier, clientFirst, clientFinal string) {
		v, err := ParseSCRAMVerifier(verifier)
		if err != nil {
			v = mockVerifier()
		}
		s := &scramServer{v: v}
		if _, err := s.first(clientFirst); err != nil {
			return
		}
		if _, _, err := s.final(clientFinal); err == nil {
			t.Fatal("a proof made without the key was accepted")
		}
	})
}
