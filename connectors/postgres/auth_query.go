package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/freshetdb/freshet/serve/pgwire"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultAuthQuery reads a role's verifier from pg_authid, which needs a
// superuser auth user. With a less privileged one, point AuthQueryConfig.Query
// at a SECURITY DEFINER function that returns the same single column.
const DefaultAuthQuery = `SELECT rolpassword FROM pg_catalog.pg_authid
WHERE rolname = $1 AND rolcanlogin AND (rolvaliduntil IS NULL OR rolvaliduntil > now())`

// AuthQueryConfig configures an AuthQuery.
type AuthQueryConfig struct {
	// URL connects as the auth user. Required.
	URL string
	// Query takes the role name as $1 and returns its verifier (one row,
	// one text column), or no row. Default DefaultAuthQuery.
	Query string
	// MaxConns bounds the auth user's connections. Default 2.
	MaxConns int32
}

// AuthQuery looks up SCRAM verifiers on the origin through an auth user,
// like PgBouncer's auth_user/auth_query. It is safe for concurrent use.
type AuthQuery struct {
	pool  *pgxpool.Pool
	query string
}

var _ pgwire.VerifierLookup = (*AuthQuery)(nil)

// NewAuthQuery validates cfg and prepares the auth user's pool; it
// connects lazily.
func NewAuthQuery(cfg AuthQueryConfig) (*AuthQuery, error) {
	if cfg.URL == "" {
		return nil, errors.New("postgres: AuthQueryConfig.URL is required")
	}
	if cfg.Query == "" {
		cfg.Query = DefaultAuthQuery
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 2
	}
	pc, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("postgres: auth query URL: %w", err)
	}
	pc.MaxConns = cfg.MaxConns
	pool, err := pgxpool.NewWithConfig(context.Background(), pc)
	if err != nil {
		return nil, fmt.Errorf("postgres: auth query pool: %w", err)
	}
	return &AuthQuery{pool: pool, query: cfg.Query}, nil
}

// LookupVerifier returns the role's stored secret, or "" when the role
// cannot log in.
func (a *AuthQuery) LookupVerifier(ctx context.Context, user string) (string, error) {
	var secret *string
	err := a.pool.QueryRow(ctx, a.query, user).Scan(&secret)
	if errors.Is(err, pgx.ErrNoRows) || (err == nil && secret == nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("auth query for %q: %w", user, err)
	}
	return *secret, nil
}

// Close closes the auth user's connections.
func (a *AuthQuery) Close() { a.pool.Close() }
