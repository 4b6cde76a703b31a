package front

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writePair writes a self-signed certificate named cn and its key, and
// returns the certificate's DER.
func writePair(t *testing.T, certFile, keyFile, cn string, at time.Time) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), at)
	writeFile(t, keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), at)
	return der
}

func writeFile(t *testing.T, name string, b []byte, at time.Time) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(name, at, at); err != nil {
		t.Fatal(err)
	}
}

// TestCertFilesReload: a renewed certificate is served from the next
// handshake after the files change; files that do not load keep the
// certificate in use.
func TestCertFilesReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	t0 := time.Now().Add(-time.Hour)
	first := writePair(t, certFile, keyFile, "first", t0)
	c, err := loadCertFiles(certFile, keyFile, nil)
	if err != nil {
		t.Fatal(err)
	}
	served := func() []byte {
		t.Helper()
		c.mu.Lock()
		c.checked = time.Time{} // as if certRecheck had passed
		c.mu.Unlock()
		cert, err := c.GetCertificate(nil)
		if err != nil || cert == nil {
			t.Fatalf("GetCertificate: %v, %v", cert, err)
		}
		return cert.Certificate[0]
	}
	if !bytes.Equal(served(), first) {
		t.Fatal("the loaded certificate is not served")
	}
	second := writePair(t, certFile, keyFile, "second", t0.Add(time.Minute))
	if !bytes.Equal(served(), second) {
		t.Fatal("the renewed certificate is not served")
	}
	writeFile(t, keyFile, []byte("not a key"), t0.Add(2*time.Minute))
	if !bytes.Equal(served(), second) {
		t.Fatal("a broken key replaced the certificate in use")
	}
	if err := os.Remove(certFile); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(served(), second) {
		t.Fatal("a missing certificate file replaced the certificate in use")
	}
}

// TestClientsValidate: settings that cannot work together are refused
// before anything connects.
func TestClientsValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		c    Clients
		ok   bool
	}{
		{"zero value", Clients{}, true},
		{"certificate without key", Clients{TLSCert: "c.pem"}, false},
		{"key without certificate", Clients{TLSKey: "k.pem"}, false},
		{"TLS required without certificate", Clients{RequireTLS: true}, false},
		{"transaction pooling without auth user", Clients{TransactionPooling: true}, false},
		{"transaction pooling with auth user", Clients{TransactionPooling: true, AuthURL: "postgres://a@h/db"}, true},
		{"negative timeout", Clients{IdleTimeout: -time.Second}, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.c.Validate(); (err == nil) != tt.ok {
				t.Fatalf("Validate() = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
