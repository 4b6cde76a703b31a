package pgwire

import (
	"context"
	"sort"
	"strings"
)

// VerifierLookup finds a role's SCRAM-SHA-256 verifier on the origin, the
// way PgBouncer's auth_query does. It returns "" and no error for a role
// that does not exist, cannot log in or has no password.
type VerifierLookup interface {
	LookupVerifier(ctx context.Context, user string) (string, error)
}

// Pool keeps origin backends for reuse once a session ends. A reused
// backend skips the origin's authentication, so a Server uses a Pool only
// when it authenticated the client itself (Config.Verifiers).
type Pool interface {
	// Acquire returns an idle backend opened with the same startup
	// parameters (key), or nil.
	Acquire(ctx context.Context, key string) *OriginConn
	// Release keeps an idle backend (no transaction, nothing
	// outstanding) under key, resetting it first when reset is set, or
	// closes it. Without reset it must not block: transaction pooling
	// calls it while holding the session's lock.
	Release(ctx context.Context, key string, oc *OriginConn, reset bool)
}

// poolKey identifies the backends a client may reuse: same user,
// database and startup parameters.
func poolKey(params map[string]string) string {
	keys := make([]string, 0, len(params))
	for k := range params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k)
		b.WriteByte(0)
		b.WriteString(params[k])
		b.WriteByte(0)
	}
	return b.String()
}
