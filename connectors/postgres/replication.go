package postgres

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/schemas"
	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// HeartbeatPrefix is the prefix of the logical messages freshet writes into
// the WAL to keep an idle slot moving.
const HeartbeatPrefix = "freshet_heartbeat"

// Reader streams a PostgreSQL database's changes through a logical
// replication slot with pgoutput. It implements ingest.Source. A Reader may
// Stream again after an error; each Stream is a new connection with a fresh
// relation cache.
type Reader struct {
	cfg        Config
	log        *slog.Logger
	lag        atomic.Int64
	heartbeats atomic.Int64
}

var _ ingest.Source = (*Reader)(nil)

// NewReader validates cfg.
func NewReader(cfg Config) (*Reader, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &Reader{cfg: cfg, log: cfg.Logger.With("source", cfg.Name, "slot", cfg.Slot)}
	r.lag.Store(-1)
	return r, nil
}

// stream is the state of one replication connection.
type stream struct {
	r      *Reader
	conn   *pgconn.PgConn
	out    ingest.Emitter
	asm    *assembler
	proto  int
	floor  schemas.LSN // the slot's confirmed position when streaming began
	last   schemas.LSN // last WAL position received
	heard  time.Time   // when the server last sent anything
	status time.Time   // when the next status update is due
	acked  schemas.LSN // what the last status update reported
	// covered is the latest time known to be covered by the positions
	// received so far: a transaction's commit time or a heartbeat's write
	// time. An idle marker claims no later time (see idleProgress).
	covered time.Time
}

// Stream implements ingest.Source. The slot must exist (see Setup): a slot
// that is missing or invalidated is reported as an *ingest.ResetError, and
// never re-created here.
func (r *Reader) Stream(ctx context.Context, from schemas.Position, out ingest.Emitter) error {
	conn, err := connectReplication(ctx, r.cfg.replicationURL())
	if err != nil {
		return &StreamError{Position: from.LSN, Err: fmt.Errorf("replication connect: %w", err)}
	}
	defer conn.Close(context.WithoutCancel(ctx))
	slot, err := readSlot(ctx, conn, r.cfg.Slot)
	if err != nil {
		return &StreamError{Position: from.LSN, Err: err}
	}
	if err := r.checkSlot(slot, from); err != nil {
		return err
	}
	s := &stream{r: r, conn: conn, out: out, asm: newAssembler(r.cfg.Name, r.cfg.DDLTrigger), proto: r.protoVersion(conn), floor: slot.confirmedFlush}
	cat := &keyLookup{url: r.cfg.URL}
	defer cat.close(ctx)
	s.asm.rels.keys = func(relid uint32) (map[string]bool, error) { return cat.primaryKey(ctx, relid) }
	start := max(from.LSN, slot.confirmedFlush)
	if err := pglogrepl.StartReplication(ctx, conn, r.cfg.Slot, pglogrepl.LSN(start), pglogrepl.StartReplicationOptions{PluginArgs: s.pluginArgs()}); err != nil {
		return &StreamError{Position: start, Err: fmt.Errorf("start replication: %w", err)}
	}
	r.log.Info("replication started", "lsn", start.String(), "proto", s.proto)
	s.last, s.heard, s.status = start, time.Now(), time.Now().Add(r.cfg.StatusInterval)
	stopHeartbeat := r.startHeartbeat(ctx)
	defer stopHeartbeat()
	return s.loop(ctx)
}

// replicationReadBuffer is how much of the stream one read from the
// socket may take. pgproto3 reads at most 8 KiB at a time, PostgreSQL's
// own send buffer, which under load is a system call per few dozen small
// changes; a walsender that is ahead has far more than that waiting.
const replicationReadBuffer = 64 << 10

// connectReplication connects with a larger read buffer under the
// protocol reader.
func connectReplication(ctx context.Context, url string) (*pgconn.PgConn, error) {
	cfg, err := pgconn.ParseConfig(url)
	if err != nil {
		return nil, err
	}
	cfg.BuildFrontend = func(r io.Reader, w io.Writer) *pgproto3.Frontend {
		return pgproto3.NewFrontend(bufio.NewReaderSize(r, replicationReadBuffer), w)
	}
	return pgconn.ConnectConfig(ctx, cfg)
}

// checkSlot turns a missing or invalidated slot into a reset: the changes
// since the consumers' position are gone, and creating a new slot here
// would silently skip them.
func (r *Reader) checkSlot(slot slotInfo, from schemas.Position) error {
	reset := func(reason string) error {
		return &ingest.ResetError{Reset: schemas.Reset{Source: r.cfg.Name, Reason: reason, Position: from}}
	}
	switch {
	case !slot.exists:
		return reset(fmt.Sprintf("replication slot %q does not exist", r.cfg.Slot))
	case slot.walStatus == "lost":
		return reset(fmt.Sprintf("replication slot %q was invalidated (wal_status lost): WAL it needed was removed", r.cfg.Slot))
	case slot.plugin != "pgoutput":
		return fmt.Errorf("postgres: slot %q uses plugin %q, want pgoutput", r.cfg.Slot, slot.plugin)
	}
	return nil
}

func (r *Reader) protoVersion(conn *pgconn.PgConn) int {
	if r.cfg.ProtoVersion != 0 {
		return r.cfg.ProtoVersion
	}
	if serverMajor(conn) < 14 {
		return 1
	}
	return 2
}

// serverMajor reads the major version from server_version ("15.4 (Debian
// 15.4-1)"); 0 if it does not parse.
func serverMajor(conn *pgconn.PgConn) int {
	v := conn.ParameterStatus("server_version")
	n := 0
	for _, c := range v {
		if c < '0' || c > '9' {
			break
		}
		n = n*10 + int(c-'0')
	}
	return n
}

func (s *stream) pluginArgs() []string {
	args := []string{"proto_version '" + strconv.Itoa(s.proto) + "'", "publication_names '" + s.r.cfg.Publication + "'"}
	if s.proto >= 2 {
		args = append(args, "streaming 'true'", "messages 'true'")
	}
	return args
}

// loop receives until ctx ends or the connection fails. Every receive has
// a deadline: the next status update, which goes out on time even under
// load. The deadline is the socket's, set when it changes, and ctx's end
// sets one in the past: a context per receive (a timer and a watcher for
// each message) cost about a tenth of the ingest's CPU.
func (s *stream) loop(ctx context.Context) error {
	sock := s.conn.Conn()
	stop := context.AfterFunc(ctx, func() { _ = sock.SetReadDeadline(time.Now()) })
	defer stop()
	var deadline time.Time
	for {
		if err := ctx.Err(); err != nil {
			return context.Cause(ctx)
		}
		now := time.Now()
		if !now.Before(s.status) {
			if err := s.sendStatus(ctx, now.Sub(s.heard) >= s.r.cfg.StatusInterval); err != nil {
				return err
			}
		}
		if now.Sub(s.heard) > s.r.cfg.ReceiveTimeout {
			return &StreamError{Position: s.last, Err: fmt.Errorf("no message from the server for %s", s.r.cfg.ReceiveTimeout)}
		}
		if !deadline.Equal(s.status) {
			if err := sock.SetReadDeadline(s.status); err != nil {
				return &StreamError{Position: s.last, Err: fmt.Errorf("receive: %w", err)}
			}
			deadline = s.status
			// Set before this check, the deadline cannot overwrite the
			// past one ctx's end sets after it.
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
		}
		msg, err := s.conn.ReceiveMessage(context.Background())
		if err != nil {
			if pgconn.Timeout(err) && ctx.Err() == nil {
				continue
			}
			if ctx.Err() != nil {
				return context.Cause(ctx)
			}
			return &StreamError{Position: s.last, Err: fmt.Errorf("receive: %w", err)}
		}
		if err := s.receive(ctx, msg); err != nil {
			return err
		}
	}
}

func (s *stream) receive(ctx context.Context, msg pgproto3.BackendMessage) error {
	switch m := msg.(type) {
	case *pgproto3.CopyData:
		s.heard = time.Now()
		return s.copyData(ctx, m.Data)
	case *pgproto3.ErrorResponse:
		return &StreamError{Position: s.last, Err: pgconn.ErrorResponseToPgError(m)}
	case *pgproto3.CopyDone:
		return &StreamError{Position: s.last, Err: errors.New("server ended the replication stream")}
	}
	return &StreamError{Position: s.last, Err: fmt.Errorf("%w: unexpected %T", ErrProtocol, msg)}
}

func (s *stream) copyData(ctx context.Context, data []byte) error {
	if len(data) == 0 {
		return &StreamError{Position: s.last, Err: fmt.Errorf("%w: empty CopyData", ErrProtocol)}
	}
	switch data[0] {
	case pglogrepl.PrimaryKeepaliveMessageByteID:
		ka, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
		if err != nil {
			return &StreamError{Position: s.last, Err: fmt.Errorf("%w: %v", ErrProtocol, err)}
		}
		return s.keepalive(ctx, ka)
	case pglogrepl.XLogDataByteID:
		xld, err := pglogrepl.ParseXLogData(data[1:])
		if err != nil {
			return &StreamError{Position: s.last, Err: fmt.Errorf("%w: %v", ErrProtocol, err)}
		}
		s.last = max(s.last, schemas.LSN(xld.WALStart))
		if err := s.xlogData(ctx, xld); err != nil {
			return &StreamError{Position: schemas.LSN(xld.WALStart), Err: err}
		}
		return nil
	}
	return &StreamError{Position: s.last, Err: fmt.Errorf("%w: unknown CopyData kind %q", ErrProtocol, data[0])}
}

// keepalive answers at once when asked, and on an idle stream turns the
// server's WAL end into a progress marker: once the bus holds that marker,
// the slot may be acknowledged there. While a transaction is open or not
// yet durable, the keepalive's position is never acknowledged.
func (s *stream) keepalive(ctx context.Context, ka pglogrepl.PrimaryKeepaliveMessage) error {
	if err := s.idleProgress(ctx, schemas.LSN(ka.ServerWALEnd)); err != nil {
		return err
	}
	if ka.ReplyRequested {
		return s.sendStatus(ctx, false)
	}
	return nil
}

// idleProgress emits a marker at lsn with the time covered so far, once
// one is known (a commit or a heartbeat seen on this stream). The time a
// message was sent is not safe there: a walsender that lags (a restarted
// ingest catching up, a loaded origin) sends a position long after it
// was the end of the WAL, and a marker claiming the send time would let a
// region serve results that miss commits made in between as if they were
// fresh.
func (s *stream) idleProgress(ctx context.Context, lsn schemas.LSN) error {
	if s.covered.IsZero() || s.asm.open() || !s.out.Idle() || lsn <= s.out.Durable().LSN || lsn <= s.floor {
		return nil
	}
	tx := ingest.Transaction{Progress: schemas.Progress{Source: s.r.cfg.Name, Position: schemas.Position{LSN: lsn}, CommitTime: s.covered}}
	return s.out.Emit(ctx, tx)
}

// cover records that positions received so far cover every commit
// acknowledged before at.
func (s *stream) cover(at time.Time) {
	if at.After(s.covered) {
		s.covered = at.UTC()
	}
}

func (s *stream) xlogData(ctx context.Context, xld pglogrepl.XLogData) error {
	msg, err := s.asm.parse(xld.WALData, s.proto)
	if err != nil {
		return err
	}
	if hb, ok := heartbeat(msg); ok {
		if at, ok := heartbeatTime(hb.Content); ok {
			s.cover(at)
		}
		return s.idleProgress(ctx, schemas.LSN(hb.LSN))
	}
	tx, err := s.asm.handle(msg)
	if err != nil || tx == nil {
		return err
	}
	s.cover(tx.Progress.CommitTime)
	return s.out.Emit(ctx, *tx)
}

// heartbeat recognises freshet's own non-transactional heartbeat messages.
func heartbeat(msg pglogrepl.Message) (*pglogrepl.LogicalDecodingMessage, bool) {
	m, _, ok := logicalMessage(msg)
	return m, ok && !m.Transactional && m.Prefix == HeartbeatPrefix
}

// logicalMessage unwraps a logical decoding message of either protocol
// version, with its transaction's xid when streamed (protocol 2).
func logicalMessage(msg pglogrepl.Message) (m *pglogrepl.LogicalDecodingMessage, xid uint32, ok bool) {
	switch x := msg.(type) {
	case *pglogrepl.LogicalDecodingMessage:
		return x, 0, true
	case *pglogrepl.LogicalDecodingMessageV2:
		return &x.LogicalDecodingMessage, x.Xid, true
	}
	return nil, 0, false
}

// sendStatus reports as written, flushed and applied only what the bus has
// durably accepted: never a received-but-unpublished position.
func (s *stream) sendStatus(ctx context.Context, replyRequested bool) error {
	pos := max(s.out.Durable().LSN, s.floor)
	err := pglogrepl.SendStandbyStatusUpdate(ctx, s.conn, pglogrepl.StandbyStatusUpdate{
		WALWritePosition: pglogrepl.LSN(pos), WALFlushPosition: pglogrepl.LSN(pos), WALApplyPosition: pglogrepl.LSN(pos),
		ReplyRequested: replyRequested,
	})
	if err != nil {
		return &StreamError{Position: s.last, Err: fmt.Errorf("send standby status: %w", err)}
	}
	if pos != s.acked {
		s.r.log.Debug("acknowledged", "lsn", pos.String())
	}
	s.acked = pos
	s.status = time.Now().Add(s.r.cfg.StatusInterval)
	return nil
}
