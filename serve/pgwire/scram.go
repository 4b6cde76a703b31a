package pgwire

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// SCRAMVerifier is a role's SCRAM-SHA-256 secret as PostgreSQL stores it
// in pg_authid.rolpassword: enough to check a client's proof and to
// recover its ClientKey, never the password.
type SCRAMVerifier struct {
	Iterations int
	Salt       []byte
	StoredKey  []byte
	ServerKey  []byte
}

// ParseSCRAMVerifier parses "SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>".
func ParseSCRAMVerifier(s string) (SCRAMVerifier, error) {
	var v SCRAMVerifier
	rest, ok := strings.CutPrefix(s, "SCRAM-SHA-256$")
	if !ok {
		return v, errors.New("not a SCRAM-SHA-256 verifier")
	}
	iterSalt, keys, ok := strings.Cut(rest, "$")
	if !ok {
		return v, errors.New("malformed SCRAM verifier")
	}
	iter, salt, ok1 := strings.Cut(iterSalt, ":")
	stored, server, ok2 := strings.Cut(keys, ":")
	if !ok1 || !ok2 {
		return v, errors.New("malformed SCRAM verifier")
	}
	var err error
	if v.Iterations, err = strconv.Atoi(iter); err != nil || v.Iterations < 1 {
		return v, errors.New("malformed SCRAM verifier iteration count")
	}
	dec := base64.StdEncoding.DecodeString
	if v.Salt, err = dec(salt); err != nil {
		return v, fmt.Errorf("SCRAM verifier salt: %w", err)
	}
	if v.StoredKey, err = dec(stored); err != nil || len(v.StoredKey) != sha256.Size {
		return v, errors.New("malformed SCRAM verifier StoredKey")
	}
	if v.ServerKey, err = dec(server); err != nil || len(v.ServerKey) != sha256.Size {
		return v, errors.New("malformed SCRAM verifier ServerKey")
	}
	return v, nil
}

// mockVerifier is checked against when a role has no usable verifier, so
// that a client cannot tell a missing role from a wrong password.
func mockVerifier() SCRAMVerifier {
	v := SCRAMVerifier{Iterations: 4096, Salt: make([]byte, 16), StoredKey: make([]byte, 32), ServerKey: make([]byte, 32)}
	_, _ = rand.Read(v.Salt)
	_, _ = rand.Read(v.StoredKey)
	return v
}

func hmacSum(key []byte, parts ...string) []byte {
	h := hmac.New(sha256.New, key)
	for i, p := range parts {
		if i > 0 {
			h.Write([]byte{','})
		}
		h.Write([]byte(p))
	}
	return h.Sum(nil)
}

func nonce() string {
	b := make([]byte, 18)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

// scramAttrs splits "a=x,b=y" into its attributes; a later duplicate is
// an error, as is an attribute without '='.
func scramAttrs(s string) (map[byte]string, error) {
	m := make(map[byte]string)
	for _, kv := range strings.Split(s, ",") {
		if len(kv) < 2 || kv[1] != '=' {
			return nil, fmt.Errorf("malformed SCRAM attribute %q", kv)
		}
		if _, dup := m[kv[0]]; dup {
			return nil, fmt.Errorf("duplicate SCRAM attribute %q", kv[0])
		}
		m[kv[0]] = kv[2:]
	}
	return m, nil
}

// scramServer is one server-side SCRAM-SHA-256 exchange (RFC 5802/7677,
// no channel binding) against a stored verifier.
type scramServer struct {
	v               SCRAMVerifier
	gs2             string
	clientFirstBare string
	serverFirst     string
	nonce           string
}

// first handles the client-first-message and returns the server-first.
func (s *scramServer) first(clientFirst string) (string, error) {
	var rest string
	switch {
	case strings.HasPrefix(clientFirst, "n,"), strings.HasPrefix(clientFirst, "y,"):
	case strings.HasPrefix(clientFirst, "p="):
		return "", errors.New("client requires SCRAM channel binding, which freshet does not offer")
	default:
		return "", errors.New("malformed SCRAM client-first-message")
	}
	i := strings.Index(clientFirst[2:], ",")
	if i < 0 {
		return "", errors.New("malformed SCRAM client-first-message")
	}
	s.gs2 = clientFirst[:2+i+1]
	rest = clientFirst[2+i+1:]
	attrs, err := scramAttrs(rest)
	if err != nil {
		return "", err
	}
	cnonce, ok := attrs['r']
	if !ok || cnonce == "" {
		return "", errors.New("SCRAM client-first-message without nonce")
	}
	s.clientFirstBare = rest
	s.nonce = cnonce + nonce()
	s.serverFirst = "r=" + s.nonce + ",s=" + base64.StdEncoding.EncodeToString(s.v.Salt) + ",i=" + strconv.Itoa(s.v.Iterations)
	return s.serverFirst, nil
}

// final checks the client-final-message. It returns the server-final
// and the ClientKey recovered from the proof, or errBadProof.
func (s *scramServer) final(clientFinal string) (serverFinal string, clientKey []byte, err error) {
	i := strings.LastIndex(clientFinal, ",p=")
	if i < 0 {
		return "", nil, errors.New("SCRAM client-final-message without proof")
	}
	withoutProof := clientFinal[:i]
	proof, err := base64.StdEncoding.DecodeString(clientFinal[i+3:])
	if err != nil || len(proof) != sha256.Size {
		return "", nil, errors.New("malformed SCRAM proof")
	}
	attrs, err := scramAttrs(withoutProof)
	if err != nil {
		return "", nil, err
	}
	if attrs['c'] != base64.StdEncoding.EncodeToString([]byte(s.gs2)) {
		return "", nil, errors.New("SCRAM channel binding data does not match")
	}
	if attrs['r'] != s.nonce {
		return "", nil, errors.New("SCRAM nonce does not match")
	}
	authMessage := []string{s.clientFirstBare, s.serverFirst, withoutProof}
	sig := hmacSum(s.v.StoredKey, authMessage...)
	clientKey = make([]byte, len(proof))
	for i := range proof {
		clientKey[i] = proof[i] ^ sig[i]
	}
	stored := sha256.Sum256(clientKey)
	if subtle.ConstantTimeCompare(stored[:], s.v.StoredKey) != 1 {
		return "", nil, errBadProof
	}
	return "v=" + base64.StdEncoding.EncodeToString(hmacSum(s.v.ServerKey, authMessage...)), clientKey, nil
}

var errBadProof = errors.New("SCRAM proof does not match")
