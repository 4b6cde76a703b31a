package postgres

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/freshetdb/freshet/materialize"
	"github.com/freshetdb/freshet/materialize/cache"
)

// RefresherConfig configures a Refresher.
type RefresherConfig struct {
	// URL is the refresh login's connection string. The role must be a
	// member of every role whose entries it refreshes (it acts as them
	// with SET ROLE) and must not set output settings of its own (role
	// or database defaults, startup options). Required.
	URL string
	// MaxIdle is how many idle connections are kept per database.
	// Default 2.
	MaxIdle int
	// Logger; nil discards.
	Logger *slog.Logger
}

// Refresher re-executes cached reads for refresh-ahead
// (materialize.Refresher). freshet keeps no user passwords, so it cannot
// log in as a client's role: it logs in as a refresh role and SET ROLEs
// to the client's, applies the key's output settings, and sends the
// request in the message shape of the client's own, capturing the
// response by the same rule as the front end: the bytes are those a
// client's fill would have cached.
type Refresher struct {
	cfg  RefresherConfig
	base *pgconn.Config
	log  *slog.Logger

	mu     sync.Mutex
	idle   map[string][]*refreshConn
	closed bool
}

var _ materialize.Refresher = (*Refresher)(nil)

// maxRefreshResponse bounds a refresh's response, as the front end bounds
// a capture: larger ones are never cached.
const maxRefreshResponse = 16 << 20

// NewRefresher validates cfg.
func NewRefresher(cfg RefresherConfig) (*Refresher, error) {
	if cfg.URL == "" {
		return nil, errors.New("postgres: RefresherConfig.URL is required")
	}
	if cfg.MaxIdle < 0 {
		return nil, errors.New("postgres: RefresherConfig.MaxIdle must not be negative")
	}
	if cfg.MaxIdle == 0 {
		cfg.MaxIdle = 2
	}
	base, err := pgconn.ParseConfig(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("postgres: refresh URL: %w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Refresher{cfg: cfg, base: base, log: log, idle: map[string][]*refreshConn{}}, nil
}

// Close closes the idle connections; later refreshes fail.
func (r *Refresher) Close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.closed = true
	for _, conns := range r.idle {
		for _, c := range conns {
			_ = c.conn.Close()
		}
	}
	r.idle = nil
}

// Refresh runs req at the origin and returns its response: the messages
// after the Parse (extended protocol) up to and including ReadyForQuery.
// It fails, wrapping materialize.ErrRefreshRole, when the login cannot
// SET ROLE to req.Role.
func (r *Refresher) Refresh(ctx context.Context, req *materialize.RefreshRequest) ([]byte, error) {
	msgs, err := requestMessages(req)
	if err != nil {
		return nil, err
	}
	c, err := r.get(ctx, req.Database)
	if err != nil {
		return nil, err
	}
	resp, err := c.run(ctx, req, msgs)
	if err != nil {
		_ = c.conn.Close() // its state is no longer known
		return nil, err
	}
	r.put(req.Database, c)
	return resp, nil
}

func (r *Refresher) get(ctx context.Context, db string) (*refreshConn, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil, errors.New("postgres: refresher closed")
	}
	if conns := r.idle[db]; len(conns) > 0 {
		c := conns[len(conns)-1]
		r.idle[db] = conns[:len(conns)-1]
		r.mu.Unlock()
		return c, nil
	}
	r.mu.Unlock()
	return r.connect(ctx, db)
}

func (r *Refresher) put(db string, c *refreshConn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || len(r.idle[db]) >= r.cfg.MaxIdle {
		_ = c.conn.Close()
		return
	}
	r.idle[db] = append(r.idle[db], c)
}

// connect logs in to db and learns which output settings the session
// holds at values of its own (not the server's defaults a client sees).
func (r *Refresher) connect(ctx context.Context, db string) (*refreshConn, error) {
	cfg := r.base.Copy()
	if db != "" {
		cfg.Database = db
	}
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: refresh connection: %w", err)
	}
	c, err := inspect(ctx, pc)
	if err != nil {
		_ = pc.Close(context.Background())
		return nil, err
	}
	if err := pc.SyncConn(ctx); err != nil {
		_ = pc.Close(context.Background())
		return nil, fmt.Errorf("postgres: refresh connection: %w", err)
	}
	hj, err := pc.Hijack()
	if err != nil {
		_ = pc.Close(context.Background())
		return nil, fmt.Errorf("postgres: refresh connection: %w", err)
	}
	c.conn = hj.Conn
	c.rd = bufio.NewReaderSize(hj.Conn, 32<<10)
	return c, nil
}

// inspect reads the session's own settings. A client's session has the
// server's defaults for every output setting it did not report (sessions
// under role or database defaults of those are never cached, ADR 0007);
// the refresh session must too, or its bytes would differ.
func inspect(ctx context.Context, pc *pgconn.PgConn) (*refreshConn, error) {
	res, err := pc.Exec(ctx, `SELECT name FROM pg_settings WHERE source IN ('client', 'database', 'user', 'database user', 'session')`).ReadAll()
	if err != nil {
		return nil, fmt.Errorf("postgres: refresh connection: read settings: %w", err)
	}
	c := &refreshConn{own: map[string]bool{}}
	for _, rs := range res {
		for _, row := range rs.Rows {
			c.own[strings.ToLower(string(row[0]))] = true
		}
	}
	for _, name := range materialize.UnseenSettings {
		if c.own[strings.ToLower(name)] && !isKeySetting(name) {
			return nil, fmt.Errorf("postgres: the refresh login sets %s itself (role or database default, or startup option): its results would differ from clients'", name)
		}
	}
	return c, nil
}

func isKeySetting(name string) bool {
	for _, s := range cache.SettingNames {
		if strings.EqualFold(s, name) {
			return true
		}
	}
	return false
}

// refreshConn is a hijacked connection of the refresh login, with the
// role and settings last applied to it.
type refreshConn struct {
	conn net.Conn
	rd   *bufio.Reader
	// own are the output settings (lower case) at a value of the
	// session's own.
	own      map[string]bool
	role     string
	roleSet  bool
	settings cache.Settings // as applied with set_config; "" = the session's default
}

// requestMessages encodes req as the client's request would have been,
// with an unnamed Parse before the Bind (the client parsed a named
// statement earlier; its ParseComplete was never part of the capture).
func requestMessages(req *materialize.RefreshRequest) ([]byte, error) {
	if strings.IndexByte(req.SQL, 0) >= 0 {
		return nil, errors.New("postgres: refresh: statement contains NUL")
	}
	var describe byte
	switch strings.TrimPrefix(req.Shape, "P") {
	case "":
		if req.Shape != "" {
			return nil, fmt.Errorf("postgres: refresh: unknown message shape %q", req.Shape)
		}
		return (&pgproto3.Query{String: req.SQL}).Encode(nil)
	case "BES":
	case "BDPES":
		describe = 'P'
	case "BDSES":
		describe = 'S'
	default:
		return nil, fmt.Errorf("postgres: refresh: unknown message shape %q", req.Shape)
	}
	buf, err := (&pgproto3.Parse{Query: req.SQL, ParameterOIDs: req.Params.Types}).Encode(nil)
	if err != nil {
		return nil, err
	}
	if buf, err = (&pgproto3.Bind{ParameterFormatCodes: req.Params.Formats, Parameters: req.Params.Values,
		ResultFormatCodes: req.ResultFormats}).Encode(buf); err != nil {
		return nil, err
	}
	if describe != 0 {
		if buf, err = (&pgproto3.Describe{ObjectType: describe}).Encode(buf); err != nil {
			return nil, err
		}
	}
	if buf, err = (&pgproto3.Execute{}).Encode(buf); err != nil {
		return nil, err
	}
	return (&pgproto3.Sync{}).Encode(buf)
}

// run sets the role and settings when they differ from the connection's,
// sends msgs and captures the response. The statements are pipelined: one
// write, one round trip.
func (c *refreshConn) run(ctx context.Context, req *materialize.RefreshRequest, msgs []byte) ([]byte, error) {
	if dl, ok := ctx.Deadline(); ok {
		_ = c.conn.SetDeadline(dl)
	} else {
		_ = c.conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { _ = c.conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	var buf []byte
	var err error
	setRole := !c.roleSet || c.role != req.Role
	if setRole {
		if strings.IndexByte(req.Role, 0) >= 0 {
			return nil, errors.New("postgres: refresh: role name contains NUL")
		}
		if buf, err = (&pgproto3.Query{String: "SET ROLE " + quoteIdent(req.Role)}).Encode(buf); err != nil {
			return nil, err
		}
	}
	set, err := c.settingsSQL(&req.Settings)
	if err != nil {
		return nil, err
	}
	if set != "" {
		if buf, err = (&pgproto3.Query{String: set}).Encode(buf); err != nil {
			return nil, err
		}
	}
	if _, err := c.conn.Write(append(buf, msgs...)); err != nil {
		return nil, fmt.Errorf("postgres: refresh: %w", err)
	}
	if setRole {
		if err := c.discard(); err != nil {
			var pe *pgconn.PgError
			if errors.As(err, &pe) && pe.Code == "42501" {
				return nil, fmt.Errorf("postgres: refresh: SET ROLE %s: %w: %w", req.Role, materialize.ErrRefreshRole, err)
			}
			return nil, fmt.Errorf("postgres: refresh: SET ROLE %s: %w", req.Role, err)
		}
		c.role, c.roleSet = req.Role, true
	}
	if set != "" {
		if err := c.discard(); err != nil {
			return nil, fmt.Errorf("postgres: refresh: settings: %w", err)
		}
		c.settings = req.Settings
	}
	return c.capture(req.Shape != "", strings.HasPrefix(req.Shape, "P"))
}

// settingsSQL is the statement that brings the session's output settings
// to want, or "" when they are already there.
func (c *refreshConn) settingsSQL(want *cache.Settings) (string, error) {
	var resets []string
	var sets []string
	for i, name := range cache.SettingNames {
		w := want[i]
		if w == "" && c.own[strings.ToLower(name)] {
			return "", fmt.Errorf("postgres: refresh: the refresh login sets %s itself; the client's session has the server's default", name)
		}
		if w == c.settings[i] {
			continue
		}
		if w == "" {
			resets = append(resets, "RESET "+name)
			continue
		}
		if strings.IndexByte(w, 0) >= 0 {
			return "", fmt.Errorf("postgres: refresh: %s contains NUL", name)
		}
		sets = append(sets, "set_config("+escapeLiteral(name)+", "+escapeLiteral(w)+", false)")
	}
	if len(sets) > 0 {
		resets = append(resets, "SELECT "+strings.Join(sets, ", "))
	}
	return strings.Join(resets, "; "), nil
}

// escapeLiteral quotes s as an escape string constant, which reads the same
// whatever standard_conforming_strings is.
func escapeLiteral(s string) string {
	return "E'" + strings.NewReplacer(`\`, `\\`, `'`, `''`).Replace(s) + "'"
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// next reads one whole message into dst, returning it extended.
func (c *refreshConn) next(dst []byte) (typ byte, out []byte, err error) {
	hdr, err := c.rd.Peek(5)
	if err != nil {
		return 0, dst, fmt.Errorf("postgres: refresh: read: %w", err)
	}
	n := int(binary.BigEndian.Uint32(hdr[1:]))
	if n < 4 || len(dst)+n+1 > maxRefreshResponse {
		return 0, dst, fmt.Errorf("postgres: refresh: message of %d bytes", n)
	}
	start := len(dst)
	dst = append(dst, make([]byte, n+1)...)
	if _, err := io.ReadFull(c.rd, dst[start:]); err != nil {
		return 0, dst, fmt.Errorf("postgres: refresh: read: %w", err)
	}
	return hdr[0], dst, nil
}

// discard reads one response up to ReadyForQuery; the first error in it
// is returned.
func (c *refreshConn) discard() error {
	var first error
	var buf []byte
	for {
		typ, msg, err := c.next(buf[:0])
		if err != nil {
			return err
		}
		buf = msg
		switch typ {
		case 'E':
			if first == nil {
				first = decodeError(msg)
			}
		case 'Z':
			return first
		}
	}
}

// capture reads the request's response as the front end captures a
// fill: a ParseComplete first when extended (not part of the result),
// then every message up to and including ReadyForQuery; errors, notices,
// parameter changes, notifications and COPY spoil it, and the status
// must be idle. withParse keeps the ParseComplete: the client's own
// request began with the Parse (shapes "PBES", "PBDPES", "PBDSES").
func (c *refreshConn) capture(extended, withParse bool) ([]byte, error) {
	var out []byte
	spoiled := ""
	if extended {
		typ, msg, err := c.next(nil)
		if err != nil {
			return nil, err
		}
		if typ != '1' {
			if typ == 'E' {
				err := decodeError(msg)
				_ = c.discard()
				return nil, fmt.Errorf("postgres: refresh: parse: %w", err)
			}
			return nil, fmt.Errorf("postgres: refresh: %q instead of ParseComplete", typ)
		}
		if withParse {
			out = append(out, '1', 0, 0, 0, 4)
		}
	}
	for {
		start := len(out)
		typ, msg, err := c.next(out)
		if err != nil {
			return nil, err
		}
		out = msg
		switch {
		case spoiled == "" && typ == 'E':
			spoiled = decodeError(out[start:]).Error()
		case spoiled == "" && materialize.SpoilsFill(typ):
			spoiled = fmt.Sprintf("message %q in the response", typ)
		case typ == 'Z':
			if spoiled != "" {
				return nil, fmt.Errorf("postgres: refresh: not cacheable: %s", spoiled)
			}
			if len(msg) != start+6 || msg[start+5] != 'I' {
				return nil, errors.New("postgres: refresh: the response left the session outside idle")
			}
			return out, nil
		}
	}
}

// decodeError makes a *pgconn.PgError of a raw ErrorResponse message.
func decodeError(msg []byte) error {
	var er pgproto3.ErrorResponse
	if len(msg) < 5 || er.Decode(msg[5:]) != nil {
		return errors.New("postgres: malformed ErrorResponse")
	}
	return pgconn.ErrorResponseToPgError(&er)
}
