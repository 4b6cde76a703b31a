package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/internal/testenv"
	"github.com/freshetdb/freshet/materialize/analyze"
)

// analysisQueries are cacheable statements with predicates of every kind
// the analysis extracts: point, AND chain, IN, = ANY, inner and outer
// joins, EXISTS and NOT EXISTS, UNION, a view, LATERAL, aggregates.
var analysisQueries = []string{
	"SELECT id, name FROM users WHERE id = 5",
	"SELECT * FROM users WHERE org_id = 2 AND active = true",
	"SELECT id FROM users WHERE id IN (1, 2, 3)",
	"SELECT id FROM users WHERE id = ANY(ARRAY[4, 6])",
	"SELECT u.id, o.id FROM users u JOIN orders o ON o.user_id = u.id AND o.status = 'open' WHERE u.org_id = 1",
	"SELECT u.id, o.id FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE o.status = 'paid'",
	"SELECT count(*) FROM orders WHERE status = 'void'",
	"SELECT id FROM users u WHERE u.name = 'a' AND EXISTS (SELECT 1 FROM orders o WHERE o.user_id = u.id AND o.status = 'open')",
	"SELECT id FROM users WHERE org_id = 3 UNION SELECT user_id FROM orders WHERE status = 'void'",
	"SELECT * FROM active_users WHERE org_id = 4",
	"SELECT id FROM users WHERE NOT EXISTS (SELECT 1 FROM orders WHERE orders.user_id = users.id AND orders.status = 'paid') AND users.org_id = 2",
	"SELECT u.id, x.id FROM users u, LATERAL (SELECT id FROM orders o WHERE o.user_id = u.id AND o.status = 'open' ORDER BY id LIMIT 1) x WHERE u.active = false",
	"SELECT u.name, count(o.id) FROM users u LEFT JOIN orders o ON o.user_id = u.id WHERE u.id IN (1, 7) GROUP BY u.name",
	"SELECT max(id) FROM orders WHERE user_id = 3",
	"SELECT id FROM users WHERE active AND org_id IN (1, 2) UNION ALL SELECT id FROM users WHERE NOT active AND org_id = 3",
	"SELECT count(*) FROM users WHERE active IS FALSE",
	// The ON clause of an outer join restricts nothing on the preserved side.
	"SELECT u.id, o.id FROM users u LEFT JOIN orders o ON o.user_id = u.id AND u.org_id = 1",
}

// TestAnalysisPredicatesAreNecessary checks, against the real PostgreSQL,
// the claim precise invalidation rests on: whenever a row change alters a
// cacheable statement's result, the change's before or after image
// satisfies every predicate of some scan of the changed table. Random
// updates, inserts and deletes are applied one at a time; every result is
// recomputed around each.
func TestAnalysisPredicatesAreNecessary(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	conn := mustConnectPG(ctx, t, testenv.PostgresURL(t))
	schema := testenv.UniqueName("analysis")
	t.Cleanup(func() {
		_, _ = conn.Exec(context.Background(), "DROP SCHEMA "+schema+" CASCADE")
		conn.Close(context.Background())
	})
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	setUpAnalysisSchema(ctx, t, conn, schema, rng)

	loader, err := postgres.NewCatalogLoader(postgres.CatalogConfig{DB: conn})
	if err != nil {
		t.Fatal(err)
	}
	cat, err := loader.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	verdicts := make([]analyze.Result, len(analysisQueries))
	for i, q := range analysisQueries {
		verdicts[i] = analyze.Analyze(analyze.Input{SQL: q, SearchPath: []string{schema}, Session: analyze.SessionKnown}, cat)
		if !verdicts[i].Cacheable {
			t.Fatalf("%s: not cacheable: %s %s", q, verdicts[i].Reason, verdicts[i].Detail)
		}
	}
	var changed, spared int
	for step := range 400 {
		before := analysisResults(ctx, t, conn)
		ch := randomChange(ctx, t, conn, rng)
		after := analysisResults(ctx, t, conn)
		for i := range analysisQueries {
			hit := dependsOn(verdicts[i], schema+"."+ch.table, ch.images())
			if before[i] != after[i] {
				changed++
				if !hit {
					t.Errorf("step %d: %s changed the result of\n  %s\nbut matches none of its scans %+v", step, ch, analysisQueries[i], verdicts[i].Scans)
				}
			} else if !hit {
				spared++
			}
		}
	}
	t.Logf("%d result changes; %d (change, statement) pairs that predicates spare an invalidation", changed, spared)
	if changed == 0 || spared == 0 {
		t.Fatalf("workload exercised nothing: %d changes, %d spared", changed, spared)
	}
}

func setUpAnalysisSchema(ctx context.Context, t *testing.T, conn *pgx.Conn, schema string, rng *rand.Rand) {
	t.Helper()
	for _, sql := range []string{
		"CREATE SCHEMA " + schema,
		"SET search_path = " + schema,
		"CREATE TABLE users (id int4 PRIMARY KEY, org_id int8 NOT NULL, name text, active bool)",
		"CREATE TABLE orders (id int8 PRIMARY KEY, user_id int4, status text)",
		"CREATE VIEW active_users AS SELECT id, org_id, name FROM users WHERE active = true",
	} {
		mustExec(ctx, t, conn, sql)
	}
	for id := 1; id <= 20; id++ {
		mustExec(ctx, t, conn, "INSERT INTO users VALUES ($1, $2, $3, $4)", id, 1+rng.IntN(4), names[rng.IntN(len(names))], rng.IntN(2) == 0)
	}
	for id := 1; id <= 40; id++ {
		mustExec(ctx, t, conn, "INSERT INTO orders VALUES ($1, $2, $3)", id, 1+rng.IntN(22), statuses[rng.IntN(len(statuses))])
	}
}

var (
	names    = []string{"a", "b", "c", "d"}
	statuses = []string{"open", "paid", "void"}
)

// analysisResults runs every query and returns each result as a sorted
// multiset of rows in text form.
func analysisResults(ctx context.Context, t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	out := make([]string, len(analysisQueries))
	for i, q := range analysisQueries {
		rows, err := conn.Query(ctx, q, pgx.QueryExecModeSimpleProtocol)
		if err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		var lines []string
		for rows.Next() {
			vals, err := rows.Values()
			if err != nil {
				t.Fatal(err)
			}
			lines = append(lines, fmt.Sprint(vals...))
		}
		if err := rows.Err(); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
		slices.Sort(lines)
		out[i] = strings.Join(lines, "\n")
	}
	return out
}

// rowChange is one applied change with its row images (nil when absent).
type rowChange struct {
	table, sql    string
	before, after map[string]any
}

func (c rowChange) images() []map[string]any { return []map[string]any{c.before, c.after} }

func (c rowChange) String() string {
	return fmt.Sprintf("%s (before %v, after %v)", c.sql, c.before, c.after)
}

// randomChange applies one random insert, update or delete to users or
// orders and returns its images as row_to_json gives them.
func randomChange(ctx context.Context, t *testing.T, conn *pgx.Conn, rng *rand.Rand) rowChange {
	t.Helper()
	table := []string{"users", "orders"}[rng.IntN(2)]
	id := 1 + rng.IntN(26)
	ch := rowChange{table: table}
	ch.before = rowImage(ctx, t, conn, "SELECT row_to_json(r) FROM "+table+" r WHERE id = $1", id)
	switch {
	case ch.before == nil:
		ch.sql = fmt.Sprintf("INSERT INTO %s VALUES (%d, %s)", table, id, randomValues(table, rng))
	case rng.IntN(4) == 0:
		ch.sql = fmt.Sprintf("DELETE FROM %s WHERE id = %d", table, id)
	default:
		col, val := randomAssignment(table, rng)
		ch.sql = fmt.Sprintf("UPDATE %s SET %s = %s WHERE id = %d", table, col, val, id)
	}
	after := rowImage(ctx, t, conn, "WITH c AS ("+ch.sql+" RETURNING *) SELECT row_to_json(c) FROM c")
	if !strings.HasPrefix(ch.sql, "DELETE") {
		ch.after = after
	}
	return ch
}

func randomValues(table string, rng *rand.Rand) string {
	if table == "users" {
		return fmt.Sprintf("%d, '%s', %t", 1+rng.IntN(4), names[rng.IntN(len(names))], rng.IntN(2) == 0)
	}
	return fmt.Sprintf("%d, '%s'", 1+rng.IntN(22), statuses[rng.IntN(len(statuses))])
}

func randomAssignment(table string, rng *rand.Rand) (string, string) {
	if table == "users" {
		switch rng.IntN(3) {
		case 0:
			return "org_id", fmt.Sprint(1 + rng.IntN(4))
		case 1:
			return "name", "'" + names[rng.IntN(len(names))] + "'"
		default:
			return "active", fmt.Sprint(rng.IntN(2) == 0)
		}
	}
	if rng.IntN(2) == 0 {
		return "user_id", fmt.Sprint(1 + rng.IntN(22))
	}
	return "status", "'" + statuses[rng.IntN(len(statuses))] + "'"
}

func rowImage(ctx context.Context, t *testing.T, conn *pgx.Conn, sql string, args ...any) map[string]any {
	t.Helper()
	var raw []byte
	err := conn.QueryRow(ctx, sql, args...).Scan(&raw)
	if err == pgx.ErrNoRows {
		return nil
	}
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var img map[string]any
	if err := dec.Decode(&img); err != nil {
		t.Fatal(err)
	}
	return img
}

// dependsOn reports whether any image satisfies every predicate of some
// scan of table: what the dependency index will test.
func dependsOn(res analyze.Result, table string, images []map[string]any) bool {
	for _, sc := range res.Scans {
		if sc.Table != table {
			continue
		}
		for _, img := range images {
			if img != nil && satisfiesAll(sc.Predicates, img) {
				return true
			}
		}
	}
	return false
}

func satisfiesAll(preds []analyze.Predicate, img map[string]any) bool {
	for _, p := range preds {
		v, ok := img[p.Column]
		if !ok {
			continue // the image lacks the column: table level
		}
		if v == nil || !slices.ContainsFunc(p.Values, func(c analyze.Value) bool { return c.Const == fmt.Sprint(v) }) {
			return false
		}
	}
	return true
}
