package front

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
)

// certRecheck is how often, at most, the certificate files are looked at
// again for a new certificate.
const certRecheck = time.Second

// certFiles serves the certificate in a PEM certificate and key file pair
// and loads it again when either file changes, so a renewed certificate
// is used from the next TLS handshake on, without a restart and without
// dropping a connection. A pair that fails to load keeps the previous one
// in use, loudly.
type certFiles struct {
	cert, key string
	log       *slog.Logger

	mu      sync.Mutex
	current *tls.Certificate
	stamp   string // the files' sizes and modification times when loaded
	checked time.Time
}

func loadCertFiles(cert, key string, log *slog.Logger) (*certFiles, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c := &certFiles{cert: cert, key: key, log: log}
	stamp, err := c.stampNow()
	if err != nil {
		return nil, err
	}
	if err := c.load(stamp); err != nil {
		return nil, err
	}
	c.checked = time.Now()
	return c, nil
}

// GetCertificate is tls.Config's hook.
func (c *certFiles) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); now.Sub(c.checked) >= certRecheck {
		c.checked = now
		if stamp, err := c.stampNow(); err != nil {
			c.log.Error("TLS certificate files unreadable; the loaded certificate stays in use", "err", err)
		} else if stamp != c.stamp {
			if err := c.load(stamp); err != nil {
				c.log.Error("TLS certificate files changed but do not load; the loaded certificate stays in use", "err", err)
			} else {
				c.log.Info("TLS certificate loaded again", "cert", c.cert)
			}
		}
	}
	return c.current, nil
}

func (c *certFiles) load(stamp string) error {
	pair, err := tls.LoadX509KeyPair(c.cert, c.key)
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	c.current, c.stamp = &pair, stamp
	return nil
}

// stampNow describes both files as they are now.
func (c *certFiles) stampNow() (string, error) {
	var stamp string
	for _, name := range []string{c.cert, c.key} {
		fi, err := os.Stat(name)
		if err != nil {
			return "", fmt.Errorf("TLS certificate: %w", err)
		}
		stamp += fmt.Sprintf("%d:%d;", fi.Size(), fi.ModTime().UnixNano())
	}
	return stamp, nil
}
