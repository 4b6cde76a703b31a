package pgwire

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5/pgproto3"
)

// scramKeyAuth answers an origin's SCRAM-SHA-256 exchange for a client
// freshet authenticated itself, with the ClientKey recovered from that
// client's proof: the origin checks the same verifier, so the key opens
// it, and freshet checks the origin's signature with the ServerKey.
type scramKeyAuth struct {
	user      string
	clientKey []byte
	serverKey []byte

	clientFirstBare string
	authMessage     []string
}

var _ ClientAuth = (*scramKeyAuth)(nil)

func (a *scramKeyAuth) Exchange(_ context.Context, msg pgproto3.BackendMessage, reply bool) ([]byte, error) {
	switch m := msg.(type) {
	case *pgproto3.AuthenticationSASL:
		if !slices.Contains(m.AuthMechanisms, "SCRAM-SHA-256") {
			return nil, errors.New("origin does not offer SCRAM-SHA-256")
		}
		a.clientFirstBare = "n=,r=" + nonce()
		return body(&pgproto3.SASLInitialResponse{AuthMechanism: "SCRAM-SHA-256", Data: []byte("n,," + a.clientFirstBare)})
	case *pgproto3.AuthenticationSASLContinue:
		attrs, err := scramAttrs(string(m.Data))
		if err != nil {
			return nil, err
		}
		withoutProof := "c=biws,r=" + attrs['r']
		a.authMessage = []string{a.clientFirstBare, string(m.Data), withoutProof}
		stored := sha256.Sum256(a.clientKey)
		sig := hmacSum(stored[:], a.authMessage...)
		proof := make([]byte, len(sig))
		for i := range sig {
			proof[i] = a.clientKey[i] ^ sig[i]
		}
		return body(&pgproto3.SASLResponse{Data: []byte(withoutProof + ",p=" + base64.StdEncoding.EncodeToString(proof))})
	case *pgproto3.AuthenticationSASLFinal:
		want := "v=" + base64.StdEncoding.EncodeToString(hmacSum(a.serverKey, a.authMessage...))
		if a.authMessage == nil || !hmac.Equal([]byte(want), m.Data) {
			return nil, errors.New("origin's SCRAM server signature does not match the verifier")
		}
		return nil, nil
	case *pgproto3.AuthenticationOk, *pgproto3.NegotiateProtocolVersion:
		return nil, nil
	}
	if reply {
		return nil, fmt.Errorf("origin asks %T for %s; a pooled login needs SCRAM-SHA-256", msg, a.user)
	}
	return nil, nil
}

// body encodes a frontend message and strips its 5-byte header.
func body(m pgproto3.FrontendMessage) ([]byte, error) {
	b, err := m.Encode(nil)
	if err != nil {
		return nil, err
	}
	return b[5:], nil
}
