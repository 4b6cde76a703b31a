package cache_test

import (
	"bytes"
	"testing"

	"github.com/freshetdb/freshet/materialize/cache"
)

// FuzzKeyInjective checks that two keys encode equally only when their
// fields are equal: a key encoding that confused two statements would
// serve one statement's result for the other.
func FuzzKeyInjective(f *testing.F) {
	f.Add("db", "app", "SELECT $1", uint64(0), uint64(0), []byte("1"), false, "UTC", "db", "app", "SELECT $1", uint64(0), uint64(0), []byte("1"), true, "UTC")
	f.Add("d", "bapp", "SELECT", uint64(0), uint64(0), []byte{}, false, "", "db", "app", "SELECT", uint64(0), uint64(0), []byte(nil), false, "")
	f.Add("db", "app", "SELECT 1", uint64(0), uint64(0), []byte("x"), false, "a", "db", "app", "SELECT 1", uint64(0), uint64(0), []byte("x"), false, "a")
	f.Add("db", "", "", uint64(1), uint64(0), []byte("x"), false, "a", "db", "", "", uint64(0), uint64(0), []byte("x"), false, "a")
	f.Add("db", "app", "S", uint64(0), uint64(1), []byte("x"), false, "", "", "app", "S", uint64(0), uint64(0), []byte("x"), false, "")
	f.Add("db", "app", "S", uint64(300), uint64(9), []byte("x"), false, "", "db", "", "", uint64(300), uint64(9), []byte("x"), false, "")
	f.Fuzz(func(t *testing.T, db1, role1, stmt1 string, id1, ctx1 uint64, p1 []byte, null1 bool, tz1 string,
		db2, role2, stmt2 string, id2, ctx2 uint64, p2 []byte, null2 bool, tz2 string) {
		k1 := fuzzKey(db1, role1, stmt1, id1, ctx1, p1, null1, tz1)
		k2 := fuzzKey(db2, role2, stmt2, id2, ctx2, p2, null2, tz2)
		// IDs stand for the role and text, the database and settings:
		// those are not compared then.
		sameStmt := id1 == id2 && (id1 != 0 || role1 == role2 && stmt1 == stmt2)
		sameCtx := ctx1 == ctx2 && (ctx1 != 0 || db1 == db2 && tz1 == tz2)
		same := sameCtx && sameStmt &&
			null1 == null2 && (null1 || bytes.Equal(p1, p2))
		if eq := bytes.Equal(cache.AppendKey(nil, &k1), cache.AppendKey(nil, &k2)); eq != same {
			t.Fatalf("keys equal=%v but fields equal=%v:\n%+v\n%+v", eq, same, k1, k2)
		}
	})
}

func fuzzKey(db, role, stmt string, id, ctx uint64, p []byte, null bool, tz string) cache.Key {
	if p == nil {
		p = []byte{}
	}
	if null {
		p = nil
	}
	return cache.Key{Database: db, Role: role, Statement: stmt, StatementID: id, ContextID: ctx, Params: [][]byte{p}, Settings: &cache.Settings{cache.TimeZone: tz}}
}
