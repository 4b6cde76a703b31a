package postgres

import (
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/jackc/pglogrepl"
)

// rowParser decodes pgoutput's Insert, Update and Delete messages into
// the pglogrepl types the assembler handles, reusing them from one message
// to the next. pglogrepl allocates a column struct, a data copy and a
// slice growth for every column of every row: most of the reader's
// allocations. Here the message is copied once and the columns point into
// the copy, so a decoded value may keep a reference to it safely.
//
// A message is only valid until the next parse. Not safe for concurrent
// use.
type rowParser struct {
	ins    pglogrepl.InsertMessageV2
	upd    pglogrepl.UpdateMessageV2
	del    pglogrepl.DeleteMessageV2
	tuples [2]pglogrepl.TupleData
	cols   [2][]pglogrepl.TupleDataColumn
}

// parse decodes data, which checkLengths accepted, when it is a row
// message; ok is false for every other kind. V2 types are returned for
// proto >= 2 (xid set inside a stream), V1 types otherwise, as pglogrepl
// does.
func (p *rowParser) parse(data []byte, proto int, inStream bool) (msg pglogrepl.Message, ok bool, err error) {
	kind := data[0]
	if kind != 'I' && kind != 'U' && kind != 'D' {
		return nil, false, nil
	}
	b := slices.Clone(data[1:])
	var xid uint32
	if proto >= 2 && inStream {
		xid, b = binary.BigEndian.Uint32(b), b[4:]
	}
	rel, b := binary.BigEndian.Uint32(b), b[4:]
	switch kind {
	case 'I':
		p.ins = pglogrepl.InsertMessageV2{InsertMessage: pglogrepl.InsertMessage{RelationID: rel}}
		p.ins.Xid = xid
		p.ins.SetType(pglogrepl.MessageTypeInsert)
		if p.ins.Tuple, err = p.tuple(0, b[1:]); err != nil {
			return nil, true, err
		}
		if proto >= 2 {
			return &p.ins, true, nil
		}
		return &p.ins.InsertMessage, true, nil
	case 'U':
		p.upd = pglogrepl.UpdateMessageV2{UpdateMessage: pglogrepl.UpdateMessage{RelationID: rel}}
		p.upd.Xid = xid
		p.upd.SetType(pglogrepl.MessageTypeUpdate)
		if b[0] == 'K' || b[0] == 'O' {
			p.upd.OldTupleType = b[0]
			if p.upd.OldTuple, err = p.tuple(1, b[1:]); err != nil {
				return nil, true, err
			}
			b = b[1+tupleLen(b[1:]):]
		}
		if p.upd.NewTuple, err = p.tuple(0, b[1:]); err != nil {
			return nil, true, err
		}
		if proto >= 2 {
			return &p.upd, true, nil
		}
		return &p.upd.UpdateMessage, true, nil
	}
	p.del = pglogrepl.DeleteMessageV2{DeleteMessage: pglogrepl.DeleteMessage{RelationID: rel, OldTupleType: b[0]}}
	p.del.Xid = xid
	p.del.SetType(pglogrepl.MessageTypeDelete)
	if p.del.OldTuple, err = p.tuple(1, b[1:]); err != nil {
		return nil, true, err
	}
	if proto >= 2 {
		return &p.del, true, nil
	}
	return &p.del.DeleteMessage, true, nil
}

// tuple decodes the tuple at the start of b into slot i, its columns
// pointing into b.
func (p *rowParser) tuple(i int, b []byte) (*pglogrepl.TupleData, error) {
	n := int(binary.BigEndian.Uint16(b))
	b = b[2:]
	if cap(p.cols[i]) < n {
		p.cols[i] = make([]pglogrepl.TupleDataColumn, n)
	}
	cols := p.cols[i][:n]
	t := &p.tuples[i]
	t.ColumnNum, t.Columns = uint16(n), t.Columns[:0]
	for j := range cols {
		c := &cols[j]
		*c = pglogrepl.TupleDataColumn{DataType: b[0]}
		b = b[1:]
		switch c.DataType {
		case pglogrepl.TupleDataTypeNull, pglogrepl.TupleDataTypeToast:
		case pglogrepl.TupleDataTypeText, pglogrepl.TupleDataTypeBinary:
			c.Length = binary.BigEndian.Uint32(b)
			c.Data, b = b[4:4+c.Length:4+c.Length], b[4+c.Length:]
		default:
			return nil, fmt.Errorf("%w: tuple value kind %q", ErrProtocol, c.DataType)
		}
		t.Columns = append(t.Columns, c)
	}
	return t, nil
}

// tupleLen is the encoded length of the tuple at the start of b.
func tupleLen(b []byte) int {
	rest, _ := skipTuple(b)
	return len(b) - len(rest)
}
