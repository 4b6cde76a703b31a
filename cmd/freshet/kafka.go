package main

import (
	"flag"
	"os"

	"github.com/freshetdb/freshet/connectors/kafka"
)

// kafkaFlags defines the brokers' TLS and SASL flags, shared by `freshet
// ingest` and `freshet serve`, on fs. The returned build, called after
// fs.Parse, checks them and sets sec.
func kafkaFlags(fs *flag.FlagSet, sec *kafka.Security) (build func() error) {
	var c kafka.SecurityConfig
	fs.BoolVar(&c.TLS, "kafka-tls", envBool("FRESHET_KAFKA_TLS"), "TLS to the brokers, trusting the system's roots unless --kafka-ca [FRESHET_KAFKA_TLS]")
	fs.StringVar(&c.CAFile, "kafka-ca", os.Getenv("FRESHET_KAFKA_CA"), "PEM roots to trust for the brokers' certificates; implies --kafka-tls [FRESHET_KAFKA_CA]")
	fs.StringVar(&c.CertFile, "kafka-cert", os.Getenv("FRESHET_KAFKA_CERT"), "PEM client certificate for brokers that authenticate clients by certificate; implies --kafka-tls [FRESHET_KAFKA_CERT]")
	fs.StringVar(&c.KeyFile, "kafka-key", os.Getenv("FRESHET_KAFKA_KEY"), "PEM private key of --kafka-cert [FRESHET_KAFKA_KEY]")
	fs.StringVar(&c.SASL, "kafka-sasl", os.Getenv("FRESHET_KAFKA_SASL"), "SASL mechanism: plain (needs TLS), scram-sha-256 or scram-sha-512; empty: none [FRESHET_KAFKA_SASL]")
	fs.StringVar(&c.User, "kafka-user", os.Getenv("FRESHET_KAFKA_USER"), "SASL user [FRESHET_KAFKA_USER]")
	fs.StringVar(&c.Password, "kafka-password", os.Getenv("FRESHET_KAFKA_PASSWORD"), "SASL password; prefer the variable, which ps does not show [FRESHET_KAFKA_PASSWORD]")
	return func() error {
		s, err := c.Build()
		*sec = s
		return err
	}
}
