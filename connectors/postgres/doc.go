// Package postgres reads a PostgreSQL database's changes through logical
// replication (pgoutput, via pglogrepl) and implements ingest.Source.
//
// Setup checks wal_level and the role, creates the publication and a
// persistent slot when missing, and reports each published table's replica
// identity. A Reader streams with protocol v2 on PostgreSQL 14+ (large
// in-progress transactions arrive streamed and are buffered per top-level
// xid until Stream Commit) or v1 before; it decodes Relation, Insert,
// Update, Delete and Truncate messages into schemas.Change values typed by
// pgtype, stamps every change with its transaction's commit end LSN, and
// acknowledges the slot only up to what the pipeline reports durable.
// Relation messages are cached per connection and never carried over a
// reconnect. A missing or invalidated slot is a reset, never re-created.
package postgres
