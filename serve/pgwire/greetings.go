package pgwire

import "sync"

// maxGreetings bounds the greetings a Server remembers: clients that put
// ever-new startup parameters (an application_name with a pid) in their
// logins must not grow it without bound.
const maxGreetings = 10_000

// greetings remembers, per pool key, what the origin last greeted a new
// backend opened with those startup parameters with (ParameterStatus and
// notices). Under transaction pooling a client's login is then answered
// with it and takes no backend, as PgBouncer answers logins: a login
// neither waits for a backend when all are taken nor costs the origin a
// round trip. Each backend opened for the key renews it.
type greetings struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (g *greetings) load(key string) ([]byte, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	b, ok := g.m[key]
	return b, ok
}

func (g *greetings) store(key string, greeting []byte) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = make(map[string][]byte)
	}
	if _, ok := g.m[key]; ok || len(g.m) < maxGreetings {
		g.m[key] = greeting
	}
}
