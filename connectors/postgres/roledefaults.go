package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/freshetdb/freshet/materialize"
)

// RoleDefaultsDB runs the query; *pgxpool.Pool and *pgx.Conn satisfy it.
type RoleDefaultsDB interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// RoleDefaultsLoader reads pg_db_role_setting: the (database, role)
// pairs whose defaults set a setting the front end cannot see
// (materialize.UnseenSettings). It implements
// materialize.RoleDefaultsLoader.
type RoleDefaultsLoader struct {
	DB RoleDefaultsDB
}

// LoadRoleDefaults implements materialize.RoleDefaultsLoader.
func (l RoleDefaultsLoader) LoadRoleDefaults(ctx context.Context) (materialize.RoleDefaults, error) {
	d := materialize.RoleDefaults{Databases: map[string]bool{}, Roles: map[string]bool{}, Pairs: map[[2]string]bool{}}
	rows, err := l.DB.Query(ctx, `SELECT coalesce(db.datname, ''), coalesce(r.rolname, ''), s.setconfig
		FROM pg_db_role_setting s
		LEFT JOIN pg_database db ON db.oid = s.setdatabase
		LEFT JOIN pg_roles r ON r.oid = s.setrole`)
	if err != nil {
		return d, fmt.Errorf("postgres: role defaults: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var db, role string
		var config []string
		if err := rows.Scan(&db, &role, &config); err != nil {
			return d, fmt.Errorf("postgres: role defaults: %w", err)
		}
		unseen := false
		for _, c := range config {
			unseen = unseen || materialize.UnseenSetting(c)
		}
		switch {
		case !unseen:
		case role == "":
			d.Databases[db] = true
		case db == "":
			d.Roles[role] = true
		default:
			d.Pairs[[2]string{db, role}] = true
		}
	}
	if err := rows.Err(); err != nil {
		return d, fmt.Errorf("postgres: role defaults: %w", err)
	}
	return d, nil
}
