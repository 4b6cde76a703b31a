package schemas_test

import (
	"testing"
	"time"

	"github.com/freshetdb/freshet/schemas"
)

// BenchmarkMarshalChange encodes the row shape of the ingest benchmark
// (bigint, int, text, numeric, timestamptz), to compare JSON encoding with
// decoding throughput.
func BenchmarkMarshalChange(b *testing.B) {
	c := schemas.Change{
		Source: "origin", Schema: "public", Table: "bench", Op: schemas.OpCreate,
		Columns: []schemas.Column{
			{Name: "id", Type: "int8", OID: 20, Family: schemas.FamilyInt, Key: true},
			{Name: "account", Type: "int4", OID: 23, Family: schemas.FamilyInt},
			{Name: "label", Type: "text", OID: 25, Family: schemas.FamilyText},
			{Name: "amount", Type: "numeric", OID: 1700, Family: schemas.FamilyNumeric},
			{Name: "at", Type: "timestamptz", OID: 1184, Family: schemas.FamilyTimestampTZ},
		},
		After:    []any{int64(123456), int64(42), "label-123456", schemas.Decimal("154320.00"), commitTime},
		Position: pos, TxID: 771, CommitTime: commitTime,
	}
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	t0 := time.Now()
	for range b.N {
		var err error
		if buf, err = schemas.AppendChange(buf[:0], &c); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(t0).Seconds(), "changes/s")
	b.SetBytes(int64(len(buf)))
}
