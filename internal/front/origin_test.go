package front

import (
	"net"
	"testing"
)

// TestOriginDialing: the origin URL's host, port and sslmode decide how
// relayed sessions reach it, with libpq's meaning of each mode.
func TestOriginDialing(t *testing.T) {
	for _, tt := range []struct {
		name, url           string
		addr                string
		tls, optional, fail bool
		checked             bool // hosts checked for target_session_attrs
		serverName          string
		fallbacks           []string // their addresses, each with TLS as the first host
	}{
		{name: "default port, sslmode prefer", url: "postgres://u:p@db.example/app", addr: "db.example:5432", tls: true, optional: true},
		{name: "disable", url: "postgres://u@db.example:6543/app?sslmode=disable", addr: "db.example:6543"},
		{name: "allow tries plaintext first", url: "postgres://u@db.example/app?sslmode=allow", addr: "db.example:5432"},
		{name: "require", url: "postgres://u@db.example/app?sslmode=require", addr: "db.example:5432", tls: true},
		{name: "verify-full checks the host name", url: "postgres://u@db.example/app?sslmode=verify-full", addr: "db.example:5432", tls: true, serverName: "db.example"},
		{name: "key=value form", url: "host=10.0.0.5 port=5433 user=u sslmode=require", addr: "10.0.0.5:5433", tls: true},
		{name: "a Unix socket is refused", url: "host=/var/run/postgresql user=u", fail: true},
		{name: "not a URL", url: "postgres://u@[::1", fail: true},
		{name: "several hosts, tried in order", url: "postgres://u@pg1.example,pg2.example:5433/app?sslmode=verify-full",
			addr: "pg1.example:5432", tls: true, serverName: "pg1.example", fallbacks: []string{"pg2.example:5433"}},
		{name: "several hosts, key=value, prefer", url: "host=10.0.0.5,10.0.0.6 port=5432,5433 user=u",
			addr: "10.0.0.5:5432", tls: true, optional: true, fallbacks: []string{"10.0.0.6:5433"}},
		{name: "several hosts with target_session_attrs are checked", url: "postgres://u@pg1,pg2/app?sslmode=disable&target_session_attrs=read-write",
			addr: "pg1:5432", fallbacks: []string{"pg2:5432"}, checked: true},
		{name: "one host with target_session_attrs", url: "postgres://u@pg1/app?sslmode=disable&target_session_attrs=primary", addr: "pg1:5432", checked: true},
		{name: "target_session_attrs any checks nothing", url: "postgres://u@pg1,pg2/app?sslmode=disable&target_session_attrs=any",
			addr: "pg1:5432", fallbacks: []string{"pg2:5432"}},
		{name: "a Unix socket among the hosts is refused", url: "host=db.example,/tmp user=u", fail: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := OriginDialing(tt.url)
			if tt.fail {
				if err == nil {
					t.Fatalf("OriginDialing(%q) = %+v, want an error", tt.url, cfg)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Addr != tt.addr || (cfg.TLS != nil) != tt.tls || cfg.TLSOptional != tt.optional {
				t.Fatalf("addr %q, TLS %v, optional %v; want %q, %v, %v", cfg.Addr, cfg.TLS != nil, cfg.TLSOptional, tt.addr, tt.tls, tt.optional)
			}
			if (cfg.CheckHost != nil) != tt.checked {
				t.Fatalf("hosts checked: %v, want %v", cfg.CheckHost != nil, tt.checked)
			}
			if tt.serverName != "" && cfg.TLS.ServerName != tt.serverName {
				t.Fatalf("server name %q, want %q", cfg.TLS.ServerName, tt.serverName)
			}
			if len(cfg.Fallbacks) != len(tt.fallbacks) {
				t.Fatalf("fallbacks %+v, want %v", cfg.Fallbacks, tt.fallbacks)
			}
			for i, fb := range cfg.Fallbacks {
				host, _, _ := net.SplitHostPort(fb.Addr)
				if fb.Addr != tt.fallbacks[i] || (fb.TLS != nil) != tt.tls || fb.TLSOptional != tt.optional ||
					tt.serverName != "" && fb.TLS.ServerName != host {
					t.Fatalf("fallback %d: %+v, want %s with TLS %v (server name %s), optional %v", i, fb, tt.fallbacks[i], tt.tls, host, tt.optional)
				}
			}
		})
	}
}
