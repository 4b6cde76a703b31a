package kafka_test

import (
	"context"
	"testing"
	"time"

	"github.com/freshetdb/freshet/connectors/kafka"
	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/internal/testenv"
)

func mustBuild(t *testing.T, cfg kafka.SecurityConfig) kafka.Security {
	t.Helper()
	s, err := cfg.Build()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestSecureBrokers: with Security, a producer and a region's consumer
// work through a listener that takes only TLS with SASL, with PLAIN and
// with SCRAM-SHA-512; a wrong password, SASL without TLS, or a broker
// certificate from another CA is refused with an error.
func TestSecureBrokers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	l := testenv.KafkaSecureListener(t)
	for _, mech := range []string{"plain", "scram-sha-512"} {
		t.Run("TLS and "+mech, func(t *testing.T) {
			sec := mustBuild(t, kafka.SecurityConfig{CAFile: l.CA, SASL: mech, User: l.User, Password: l.Password})
			topic := testenv.UniqueName("freshet_secure")
			p, err := kafka.NewProducer(ctx, kafka.ProducerConfig{Brokers: l.Brokers, Topic: topic, Security: sec, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			publishAll(ctx, t, p, []*ingest.Batch{batchOf(txn(0, 3, 10)), batchOf(txn(1, 3, 10))})
			rec := newRecorder()
			runConsumer(ctx, t, kafka.ConsumerConfig{Brokers: l.Brokers, Topic: topic, Region: topic, Handler: rec,
				FromBeginning: true, MaxWait: 100 * time.Millisecond, Security: sec})
			rec.waitWatermark(ctx, t, pos(1))
			if n := len(changesOf(rec.snapshot())); n != 6 {
				t.Fatalf("%d changes delivered, want 6", n)
			}
		})
	}
	for _, tt := range []struct {
		name string
		cfg  kafka.SecurityConfig
	}{
		{"wrong password", kafka.SecurityConfig{CAFile: l.CA, SASL: "scram-sha-512", User: l.User, Password: "wrong"}},
		{"SASL without TLS", kafka.SecurityConfig{SASL: "scram-sha-512", User: l.User, Password: l.Password}},
		{"a broker certificate the system roots do not vouch for", kafka.SecurityConfig{TLS: true, SASL: "plain", User: l.User, Password: l.Password}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
			defer cancel()
			p, err := kafka.NewProducer(pctx, kafka.ProducerConfig{Brokers: l.Brokers, Topic: testenv.UniqueName("freshet_refused"),
				Security: mustBuild(t, tt.cfg), WriteTimeout: 5 * time.Second})
			if err == nil {
				_ = p.Close()
				t.Fatal("the producer reached a broker it should not have")
			}
		})
	}
}

// TestSecurityConfigBuild: settings that cannot work, or would send a
// password in the clear, are refused before any connection.
func TestSecurityConfigBuild(t *testing.T) {
	for _, tt := range []struct {
		name          string
		cfg           kafka.SecurityConfig
		ok, tls, sasl bool
	}{
		{name: "plaintext", cfg: kafka.SecurityConfig{}, ok: true},
		{name: "TLS with the system roots", cfg: kafka.SecurityConfig{TLS: true}, ok: true, tls: true},
		{name: "SCRAM without TLS", cfg: kafka.SecurityConfig{SASL: "scram-sha-256", User: "u", Password: "p"}, ok: true, sasl: true},
		{name: "PLAIN without TLS", cfg: kafka.SecurityConfig{SASL: "plain", User: "u", Password: "p"}},
		{name: "PLAIN with TLS", cfg: kafka.SecurityConfig{TLS: true, SASL: "plain", User: "u", Password: "p"}, ok: true, tls: true, sasl: true},
		{name: "SASL without a password", cfg: kafka.SecurityConfig{TLS: true, SASL: "scram-sha-512", User: "u"}},
		{name: "credentials without a mechanism", cfg: kafka.SecurityConfig{User: "u", Password: "p"}},
		{name: "an unknown mechanism", cfg: kafka.SecurityConfig{TLS: true, SASL: "gssapi", User: "u", Password: "p"}},
		{name: "a certificate without its key", cfg: kafka.SecurityConfig{CertFile: "c.pem"}},
		{name: "a CA file that is not there", cfg: kafka.SecurityConfig{CAFile: "/nonexistent/ca.pem"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tt.cfg.Build()
			if (err == nil) != tt.ok {
				t.Fatalf("Build() error %v, want ok %v", err, tt.ok)
			}
			if tt.ok && ((s.TLS != nil) != tt.tls || (s.SASL != nil) != tt.sasl) {
				t.Fatalf("TLS %v, SASL %v; want %v, %v", s.TLS != nil, s.SASL != nil, tt.tls, tt.sasl)
			}
		})
	}
}
