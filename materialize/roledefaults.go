package materialize

import (
	"context"
	"strings"
)

// RoleDefaults are the (database, role) pairs whose defaults (ALTER ROLE
// / ALTER DATABASE ... SET) set a setting that changes a statement's
// meaning or output without the front end seeing it — search_path above
// all: analysis would resolve unqualified names to other tables. Sessions
// they apply to are treated as of unknown state: relayed, never cached.
type RoleDefaults struct {
	// Databases, Roles and Pairs: a default for every role in a
	// database, for a role in every database, for a role in a database.
	Databases map[string]bool
	Roles     map[string]bool
	Pairs     map[[2]string]bool
}

// RoleDefaultsLoader reads them from the origin;
// connectors/postgres.RoleDefaultsLoader implements it.
type RoleDefaultsLoader interface {
	LoadRoleDefaults(ctx context.Context) (RoleDefaults, error)
}

// UnseenSettings are the settings that, set as a role or database
// default, make a session's state unknown: the ones PostgreSQL does not
// report with ParameterStatus and that change what a statement reads or
// how its result is encoded.
var UnseenSettings = []string{
	"search_path", "extra_float_digits", "bytea_output", "lc_monetary", "lc_numeric", "lc_time",
	"role", "default_transaction_isolation", "row_security", "default_text_search_config",
}

// UnseenSetting reports whether a name=value default names one of
// UnseenSettings (case-insensitively, as GUC names are).
func UnseenSetting(nameValue string) bool {
	name, _, _ := strings.Cut(nameValue, "=")
	for _, s := range UnseenSettings {
		if strings.EqualFold(name, s) {
			return true
		}
	}
	return false
}

func (d *RoleDefaults) applies(database, role string) bool {
	if d == nil {
		return false
	}
	return d.Databases[database] || d.Roles[role] || d.Pairs[[2]string{database, role}]
}

// loadRoleDefaults refreshes them; on failure every session is unknown
// until a load succeeds.
func (m *Materializer) loadRoleDefaults(ctx context.Context) error {
	if m.cfg.RoleDefaults == nil {
		return nil
	}
	d, err := m.cfg.RoleDefaults.LoadRoleDefaults(ctx)
	if err != nil {
		return err
	}
	m.roleDefaults.Store(&d)
	return nil
}

// sessionUnseen reports whether role defaults make r's session unknown.
func (m *Materializer) sessionUnseen(r *Request) bool {
	if m.cfg.RoleDefaults == nil {
		return false
	}
	d := m.roleDefaults.Load()
	return d == nil || d.applies(r.Database, r.Role)
}
