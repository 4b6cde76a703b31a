package kafka

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	kafkago "github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/sasl"
	"github.com/segmentio/kafka-go/sasl/plain"
	"github.com/segmentio/kafka-go/sasl/scram"
)

// Security is how freshet reaches the brokers: over TLS, authenticated
// with SASL, both, or neither (the zero value: plaintext, no
// authentication). It applies to every connection a producer or consumer
// makes: writes, fetches, metadata, topic creation and offsets.
type Security struct {
	// TLS, when set, wraps every broker connection.
	TLS *tls.Config
	// SASL, when set, authenticates every broker connection (kafka-go's
	// sasl/plain or sasl/scram mechanisms).
	SASL sasl.Mechanism
}

// dialTimeout bounds a broker connection's dial and handshakes.
const dialTimeout = 10 * time.Second

// transport is what kafka-go's Client and Writer use; nil (kafka-go's
// default transport) for plaintext without SASL.
func (s Security) transport() kafkago.RoundTripper {
	if s.TLS == nil && s.SASL == nil {
		return nil
	}
	return &kafkago.Transport{
		Dial: (&net.Dialer{Timeout: dialTimeout}).DialContext,
		TLS:  s.TLS,
		SASL: s.SASL,
	}
}

// dialer is what a partition's fetch connection is dialled with.
func (s Security) dialer() *kafkago.Dialer {
	return &kafkago.Dialer{Timeout: dialTimeout, DualStack: true, TLS: s.TLS, SASLMechanism: s.SASL}
}

// client is an admin and offsets client for brokers.
func (s Security) client(brokers []string, timeout time.Duration) *kafkago.Client {
	return &kafkago.Client{Addr: kafkago.TCP(brokers...), Timeout: timeout, Transport: s.transport()}
}

// SecurityConfig describes Security the way an operator gives it: files
// and names.
type SecurityConfig struct {
	// TLS turns TLS on, trusting the system's roots unless CAFile.
	TLS bool
	// CAFile holds the PEM roots to trust instead; it implies TLS.
	CAFile string
	// CertFile and KeyFile are a PEM client certificate and key, for
	// brokers that authenticate clients by certificate; they imply TLS.
	CertFile, KeyFile string
	// SASL is "", "plain", "scram-sha-256" or "scram-sha-512".
	SASL string
	// User and Password are the SASL credentials.
	User, Password string
}

// Build checks cfg and makes the Security it describes. PLAIN without TLS
// is refused: it would send the password in the clear.
func (cfg SecurityConfig) Build() (Security, error) {
	var s Security
	useTLS := cfg.TLS || cfg.CAFile != "" || cfg.CertFile != "" || cfg.KeyFile != ""
	switch {
	case (cfg.CertFile == "") != (cfg.KeyFile == ""):
		return s, errors.New("kafka: a client certificate needs its key and a key its certificate")
	case cfg.SASL != "" && (cfg.User == "" || cfg.Password == ""):
		return s, fmt.Errorf("kafka: SASL %s needs a user and a password", cfg.SASL)
	case cfg.SASL == "" && (cfg.User != "" || cfg.Password != ""):
		return s, errors.New("kafka: a user and password need a SASL mechanism")
	case cfg.SASL == "plain" && !useTLS:
		return s, errors.New("kafka: SASL PLAIN sends the password in the clear; it needs TLS")
	}
	if useTLS {
		t, err := cfg.tlsConfig()
		if err != nil {
			return s, err
		}
		s.TLS = t
	}
	switch cfg.SASL {
	case "":
	case "plain":
		s.SASL = plain.Mechanism{Username: cfg.User, Password: cfg.Password}
	case "scram-sha-256", "scram-sha-512":
		algo := scram.SHA256
		if cfg.SASL == "scram-sha-512" {
			algo = scram.SHA512
		}
		m, err := scram.Mechanism(algo, cfg.User, cfg.Password)
		if err != nil {
			return s, fmt.Errorf("kafka: SASL %s: %w", cfg.SASL, err)
		}
		s.SASL = m
	default:
		return s, fmt.Errorf("kafka: SASL mechanism %q is not plain, scram-sha-256 or scram-sha-512", cfg.SASL)
	}
	return s, nil
}

func (cfg SecurityConfig) tlsConfig() (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: CA file: %w", err)
		}
		t.RootCAs = x509.NewCertPool()
		if !t.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("kafka: no PEM certificate in CA file %s", cfg.CAFile)
		}
	}
	if cfg.CertFile != "" {
		pair, err := tls.LoadX509KeyPair(cfg.CertFile, cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("kafka: client certificate: %w", err)
		}
		t.Certificates = []tls.Certificate{pair}
	}
	return t, nil
}
