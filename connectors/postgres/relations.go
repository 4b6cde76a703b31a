package postgres

import (
	"fmt"
	"slices"

	"github.com/freshetdb/freshet/schemas"
	"github.com/jackc/pglogrepl"
)

// relation is what a Relation message said about a table.
type relation struct {
	id       uint32
	schema   string
	table    string
	identity uint8 // 'd' default, 'f' full, 'i' index, 'n' nothing
	columns  []schemas.Column
}

// relations caches Relation messages by id for one replication connection.
// PostgreSQL sends a Relation before a session's first change to a table
// and again after the table changes, never otherwise, so the cache must
// start empty on every connection.
type relations struct {
	byID map[uint32]*relation
	dec  *valueDecoder
	// keys looks up a table's primary key; nil leaves the identity flags.
	keys func(relid uint32) (map[string]bool, error)
}

func newRelations(dec *valueDecoder) *relations {
	return &relations{byID: map[uint32]*relation{}, dec: dec}
}

// put caches m and reports whether it changed a relation seen before on
// this connection (a schema change). Key columns are the replica identity's
// as flagged, except under REPLICA IDENTITY FULL, where every column is
// flagged and the primary key is looked up instead.
func (rs *relations) put(m *pglogrepl.RelationMessage) (*relation, bool, error) {
	r := &relation{id: m.RelationID, schema: m.Namespace, table: m.RelationName, identity: m.ReplicaIdentity}
	var pk map[string]bool
	if m.ReplicaIdentity == 'f' && rs.keys != nil {
		var err error
		if pk, err = rs.keys(m.RelationID); err != nil {
			return nil, false, fmt.Errorf("%s.%s: %w", m.Namespace, m.RelationName, err)
		}
	}
	for _, c := range m.Columns {
		key := c.Flags&1 == 1
		if pk != nil {
			key = pk[c.Name]
		}
		r.columns = append(r.columns, rs.dec.column(c.Name, c.DataType, key))
	}
	old, seen := rs.byID[m.RelationID]
	rs.byID[m.RelationID] = r
	return r, seen && !sameShape(old, r), nil
}

func sameShape(a, b *relation) bool {
	return a.schema == b.schema && a.table == b.table && a.identity == b.identity && slices.Equal(a.columns, b.columns)
}

// get returns the relation for id or a protocol error.
func (rs *relations) get(id uint32) (*relation, error) {
	r, ok := rs.byID[id]
	if !ok {
		return nil, fmt.Errorf("%w: change for relation id %d before its Relation message", ErrProtocol, id)
	}
	return r, nil
}

// image decodes a tuple into one value per column. keyOnly is set for a
// 'K' tuple, whose non-key columns are sent as NULL but are in truth
// absent.
func (rs *relations) image(r *relation, t *pglogrepl.TupleData, keyOnly bool) ([]any, error) {
	if t == nil {
		return nil, nil
	}
	if len(t.Columns) != len(r.columns) {
		return nil, fmt.Errorf("%w: %s.%s tuple has %d columns, relation has %d", ErrProtocol, r.schema, r.table, len(t.Columns), len(r.columns))
	}
	out := make([]any, len(t.Columns))
	for i, c := range t.Columns {
		col := &r.columns[i]
		switch {
		case keyOnly && !col.Key:
			out[i] = schemas.Absent
		case c.DataType == pglogrepl.TupleDataTypeNull:
			out[i] = nil
		case c.DataType == pglogrepl.TupleDataTypeToast:
			out[i] = schemas.Unchanged
		case c.DataType == pglogrepl.TupleDataTypeText:
			v, err := rs.dec.decode(col, c.Data)
			if err != nil {
				return nil, fmt.Errorf("%w: %s.%s column %q (type oid %d): %w", ErrDecode, r.schema, r.table, col.Name, col.OID, err)
			}
			out[i] = v
		default:
			return nil, fmt.Errorf("%w: %s.%s column %q has tuple kind %q", ErrProtocol, r.schema, r.table, col.Name, c.DataType)
		}
	}
	return out, nil
}
