// Package pgwire is freshet's PostgreSQL wire-protocol front end: a
// transparent proxy that any PostgreSQL client can connect to.
//
// # Startup
//
// A client connection starts with at most one SSLRequest (answered 'S' and
// upgraded to TLS when Config.TLS is set, else 'N'), any number of
// GSSENCRequests (always 'N') and then a StartupMessage, or a CancelRequest.
// Startup packets are read unbuffered, byte for byte, so nothing a client
// sends after an SSLRequest can be mistaken for data that arrived inside TLS:
// those bytes reach the TLS handshake, which rejects them. A client may
// also start TLS at once, without an SSLRequest (libpq 17's
// sslnegotiation=direct): a first byte of 0x16 (a TLS ClientHello; a
// startup packet's first byte is 0) starts the handshake, which must
// choose the "postgresql" ALPN protocol, as PostgreSQL 17 requires.
//
// # Authentication
//
// freshet stores no user passwords. The Connector opens an origin backend
// for the client and relays the origin's own authentication exchange (trust,
// md5, SCRAM-SHA-256) through a ClientAuth, so no client reaches the origin
// or the cache without passing the origin's authentication, and no client
// message is forwarded before the origin has said AuthenticationOk.
// SCRAM-SHA-256-PLUS is never advertised (channel binding cannot cross a
// TLS-terminating proxy), and a cleartext password is only asked for over
// TLS.
//
// # Relay
//
// After startup the client receives the origin's real ParameterStatus
// values, freshet's own BackendKeyData and the origin's ReadyForQuery. From
// then on messages are forwarded whole in both directions by two pumps that
// read only the 5-byte header (plus the SQL of Query and Parse messages, for
// the routing seam), buffer their writes and flush when their input is
// drained. The origin's protocol state machine (extended protocol,
// discard-until-Sync, COPY, LISTEN/NOTIFY, function calls) is therefore the
// origin's own, and a client sees exactly what it would see directly.
//
// # Event loop
//
// On Linux, unless Config.NoEventLoop is set, a session whose two
// connections are plain TCP or Unix sockets and that needs neither the
// cache, pooling nor an idle timeout is relayed by the Server's event loop
// (eventloop_linux.go) instead of the pumps: one thread in a
// level-triggered epoll_wait over duplicates of the sessions' sockets
// (the net.Conns are closed, which takes them out of Go's poller). On
// readiness it reads once, scans message headers exactly as the pumps do
// (ReadyForQuery status, outstanding requests, frontend message checks)
// and writes the whole messages to the peer at once; what the peer does
// not take waits for its EPOLLOUT while the source is not read. The loop
// handles only the steady state: an end of file, a read or write error,
// Terminate, a bad header and Close hand the session back to its goroutine
// with what was buffered, and the pumps finish it as they would have.
// Cancel and the statement timeout need nothing from the loop.
//
// A cached session (session mode, plain sockets, no idle timeout) starts
// on the pumps, which handle Parse, fills, SETs and the rest. When its
// last requests were cache hits and it is idle at a clean boundary, the
// pumps park it in the loop (park.go, loophits_linux.go): the origin pump
// is stopped between two messages, and the loop then answers the
// client's Query or Bind [Describe] Execute Sync requests that are cache
// hits right now (materialize.HitLooker: no fence query, no wait, no
// ticket) with one read and one write, nothing relayed. Anything else — a
// miss, a write, a Parse, a pending fence, an origin message, an end —
// hands the session back to the pumps with every byte not answered. A
// short stint doubles the hits needed before the next park.
//
// # Verified authentication and pooling
//
// With Config.Verifiers (an auth query on the origin, like PgBouncer's
// auth_user), freshet runs the SCRAM-SHA-256 exchange with the client
// itself against the role's stored verifier, recovers the ClientKey from
// the client's proof and opens origin backends with it. Still no password
// is stored. Only then may backends be reused (Config.Pool): in
// SessionMode a backend goes back to the pool after DISCARD ALL when its
// client leaves idle; in TransactionMode a client holds a backend only
// from its first message to the ReadyForQuery 'I' that ends the
// transaction, SET/RESET run outside transactions are replayed on the
// next backend, and state a backend keeps but freshet cannot replay
// (temporary tables, session advisory locks, LISTEN, SQL PREPARE,
// cursors, named protocol-level statements, set_config, SET inside a
// transaction) pins the client to its backend until it leaves. The
// unnamed statement follows the client: a Bind or Describe of it that
// reaches a backend its Parse did not reach in the same attachment gets
// that Parse first (txRestoreUnnamed), where PgBouncer would run it on
// whatever unnamed statement that backend holds.
//
// # Cache
//
// With a materialize.Cache other than PassThrough (cache.go, ADR 0007),
// a session that is idle — nothing outstanding at the origin, every
// answer flushed to the client, transaction status I, session state
// known; in TransactionMode, holding no backend — offers two request
// forms to the cache: a simple Query, and Bind [Describe] Execute Sync
// on a named statement, whole in the read buffer. A hit is one write of
// the stored response and the request is consumed; a miss forwards the
// request and the origin pump copies its response up to ReadyForQuery
// into the fill. A SET or RESET of a setting the origin reports back
// (TimeZone, DateStyle, IntervalStyle; the reported value goes into the
// key) or of one that never changes an answer's bytes keeps the session
// known (settings.go); any other, DISCARD, set_config, a statement that
// may run one of the origin's functions that sets what PostgreSQL does
// not report (materialize.SettingsWatcher), a client encoding
// other than UTF-8 or an unknown ParameterStatus make it unknown
// (relayed only). Anything that may have written makes the next cached
// read wait for the change stream to pass the origin's position.
// In TransactionMode a hit takes no backend, and a miss is captured by
// the pump of the backend it attaches; a pinned session holds its
// backend, so it is relayed only.
//
// # Concurrency
//
// A Server is safe for concurrent use; each client connection is served by
// its own goroutines.
package pgwire
