package postgres

import (
	"fmt"
	"time"

	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/schemas"
	"github.com/jackc/pglogrepl"
)

// openTx collects the changes of a transaction until its commit. subxids
// is only kept for streamed transactions, whose subtransactions can abort
// on their own.
type openTx struct {
	xid     uint32
	changes []schemas.Change
	subxids []uint32
}

// assembler turns decoded pgoutput messages into committed transactions:
// Begin…Commit for ordinary transactions, and for large ones streamed while
// in progress (protocol v2), the segments of each top-level xid buffered
// until Stream Commit, dropped on Stream Abort. Not safe for concurrent use.
type assembler struct {
	source string
	ddl    bool // report the DDL event trigger's messages as catalog changes
	rels   *relations
	dec    *valueDecoder
	rows   rowParser

	cur       *openTx
	lastSize  int // changes in the last committed transaction
	streams   map[uint32]*openTx
	inStream  bool
	streamXid uint32
}

func newAssembler(source string, ddl bool) *assembler {
	dec := newValueDecoder()
	return &assembler{source: source, ddl: ddl, dec: dec, rels: newRelations(dec), streams: map[uint32]*openTx{}}
}

// maxSizeHint caps the room a new transaction gets for changes up front,
// so that a small one queued after a large one holds little unused memory.
const maxSizeHint = 256

// open reports whether a transaction is in progress, so the position of a
// keepalive must not be acknowledged.
func (a *assembler) open() bool { return a.cur != nil || len(a.streams) > 0 }

// parse decodes one pgoutput message. pglogrepl does not check every
// length, so a malformed message is caught here rather than crashing.
func (a *assembler) parse(data []byte, proto int) (msg pglogrepl.Message, err error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty message", ErrProtocol)
	}
	if err := checkLengths(data, proto >= 2 && a.inStream); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("%w: malformed %q message: %v", ErrProtocol, data[0], r)
		}
	}()
	if msg, ok, err := a.rows.parse(data, proto, a.inStream); ok {
		if err != nil {
			return nil, fmt.Errorf("%w: %q message: %v", ErrProtocol, data[0], err)
		}
		return msg, nil
	}
	if proto >= 2 {
		msg, err = pglogrepl.ParseV2(data, a.inStream)
	} else {
		msg, err = pglogrepl.Parse(data)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %q message: %v", ErrProtocol, data[0], err)
	}
	return msg, nil
}

// handle applies one message and returns a transaction when one commits.
func (a *assembler) handle(msg pglogrepl.Message) (*ingest.Transaction, error) {
	switch m := msg.(type) {
	case *pglogrepl.BeginMessage:
		if a.cur != nil {
			return nil, fmt.Errorf("%w: Begin of xid %d inside xid %d", ErrProtocol, m.Xid, a.cur.xid)
		}
		// Sized like the last one: a workload's transactions tend to be
		// alike, and growing a slice of changes one doubling at a time
		// copied each of them about twice.
		a.cur = &openTx{xid: m.Xid, changes: make([]schemas.Change, 0, min(a.lastSize, maxSizeHint))}
	case *pglogrepl.CommitMessage:
		if a.cur == nil {
			return nil, fmt.Errorf("%w: Commit without Begin", ErrProtocol)
		}
		tx := a.finish(a.cur, m.TransactionEndLSN, m.CommitTime)
		a.cur, a.lastSize = nil, len(tx.Changes)
		return tx, nil
	case *pglogrepl.StreamStartMessageV2:
		a.inStream, a.streamXid = true, m.Xid
		if a.streams[m.Xid] == nil {
			a.streams[m.Xid] = &openTx{xid: m.Xid}
		}
	case *pglogrepl.StreamStopMessageV2:
		a.inStream = false
	case *pglogrepl.StreamCommitMessageV2:
		t := a.streams[m.Xid]
		if t == nil {
			t = &openTx{xid: m.Xid} // streamed, but nothing published in it
		}
		delete(a.streams, m.Xid)
		return a.finish(t, m.TransactionEndLSN, m.CommitTime), nil
	case *pglogrepl.StreamAbortMessageV2:
		a.abort(m.Xid, m.SubXid)
	case *pglogrepl.RelationMessage:
		return nil, a.relation(m, 0)
	case *pglogrepl.RelationMessageV2:
		return nil, a.relation(&m.RelationMessage, m.Xid)
	case *pglogrepl.TypeMessage:
		a.dec.typeNames[m.DataType] = m.Namespace + "." + m.Name
	case *pglogrepl.TypeMessageV2:
		a.dec.typeNames[m.DataType] = m.Namespace + "." + m.Name
	case *pglogrepl.InsertMessage:
		return nil, a.insert(m, 0)
	case *pglogrepl.InsertMessageV2:
		return nil, a.insert(&m.InsertMessage, m.Xid)
	case *pglogrepl.UpdateMessage:
		return nil, a.update(m, 0)
	case *pglogrepl.UpdateMessageV2:
		return nil, a.update(&m.UpdateMessage, m.Xid)
	case *pglogrepl.DeleteMessage:
		return nil, a.delete(m, 0)
	case *pglogrepl.DeleteMessageV2:
		return nil, a.delete(&m.DeleteMessage, m.Xid)
	case *pglogrepl.TruncateMessage:
		return nil, a.truncate(m, 0)
	case *pglogrepl.TruncateMessageV2:
		return nil, a.truncate(&m.TruncateMessage, m.Xid)
	case *pglogrepl.LogicalDecodingMessage, *pglogrepl.LogicalDecodingMessageV2:
		if xid, ok := ddlMessage(msg); ok && a.ddl {
			return nil, a.catalogChange(xid)
		}
		// Others are heartbeats, handled by the reader, or not freshet's.
	case *pglogrepl.OriginMessage:
	default:
		return nil, fmt.Errorf("%w: unexpected message %T", ErrProtocol, msg)
	}
	return nil, nil
}

// finish stamps the commit position and time on every change.
func (a *assembler) finish(t *openTx, end pglogrepl.LSN, at time.Time) *ingest.Transaction {
	pos := schemas.Position{LSN: schemas.LSN(end)}
	at = at.UTC()
	for i := range t.changes {
		c := &t.changes[i]
		c.Position, c.CommitTime, c.Seq, c.TxID = pos, at, uint32(i), t.xid
	}
	return &ingest.Transaction{
		Changes:  t.changes,
		Progress: schemas.Progress{Source: a.source, Position: pos, CommitTime: at},
	}
}

// abort drops a streamed transaction, or only one subtransaction of it.
func (a *assembler) abort(xid, subxid uint32) {
	t := a.streams[xid]
	if t == nil {
		return // PostgreSQL may abort a stream it never started sending
	}
	if xid == subxid {
		delete(a.streams, xid)
		return
	}
	kept, keptX := t.changes[:0], t.subxids[:0]
	for i, c := range t.changes {
		if t.subxids[i] != subxid {
			kept, keptX = append(kept, c), append(keptX, t.subxids[i])
		}
	}
	t.changes, t.subxids = kept, keptX
}

// add appends c to the open transaction: the streamed one when inside a
// stream (xid is then the subtransaction's), else the current one.
func (a *assembler) add(c schemas.Change, xid uint32) error {
	if a.inStream {
		t := a.streams[a.streamXid]
		if t == nil {
			return fmt.Errorf("%w: change in stream of xid %d after it ended", ErrProtocol, a.streamXid)
		}
		t.changes = append(t.changes, c)
		t.subxids = append(t.subxids, xid)
		return nil
	}
	if a.cur == nil {
		return fmt.Errorf("%w: %s change to %s.%s outside a transaction", ErrProtocol, c.Op, c.Schema, c.Table)
	}
	a.cur.changes = append(a.cur.changes, c)
	return nil
}

func (a *assembler) newChange(r *relation, op schemas.Op) schemas.Change {
	return schemas.Change{Source: a.source, Schema: r.schema, Table: r.table, Op: op, Columns: r.columns}
}

// relation caches a Relation message; a relation that changed shape on
// this connection becomes a schema-change event in the transaction.
func (a *assembler) relation(m *pglogrepl.RelationMessage, xid uint32) error {
	r, changed, err := a.rels.put(m)
	if err != nil || !changed {
		return err
	}
	if a.cur == nil && !a.inStream {
		return nil // outside a transaction there is nothing to order it with
	}
	return a.add(a.newChange(r, schemas.OpSchemaChange), xid)
}

func (a *assembler) insert(m *pglogrepl.InsertMessage, xid uint32) error {
	r, err := a.rels.get(m.RelationID)
	if err != nil {
		return err
	}
	c := a.newChange(r, schemas.OpCreate)
	if c.After, err = a.rels.image(r, m.Tuple, false); err != nil {
		return err
	}
	return a.add(c, xid)
}

func (a *assembler) update(m *pglogrepl.UpdateMessage, xid uint32) error {
	r, err := a.rels.get(m.RelationID)
	if err != nil {
		return err
	}
	c := a.newChange(r, schemas.OpUpdate)
	if m.OldTuple != nil {
		if c.Before, err = a.rels.image(r, m.OldTuple, m.OldTupleType == pglogrepl.UpdateMessageTupleTypeKey); err != nil {
			return err
		}
	}
	if c.After, err = a.rels.image(r, m.NewTuple, false); err != nil {
		return err
	}
	return a.add(c, xid)
}

func (a *assembler) delete(m *pglogrepl.DeleteMessage, xid uint32) error {
	r, err := a.rels.get(m.RelationID)
	if err != nil {
		return err
	}
	c := a.newChange(r, schemas.OpDelete)
	if c.Before, err = a.rels.image(r, m.OldTuple, m.OldTupleType == pglogrepl.DeleteMessageTupleTypeKey); err != nil {
		return err
	}
	return a.add(c, xid)
}

// truncate becomes one event per table.
func (a *assembler) truncate(m *pglogrepl.TruncateMessage, xid uint32) error {
	for _, id := range m.RelationIDs {
		r, err := a.rels.get(id)
		if err != nil {
			return err
		}
		if err := a.add(a.newChange(r, schemas.OpTruncate), xid); err != nil {
			return err
		}
	}
	return nil
}
