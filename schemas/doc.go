// Package schemas defines what flows between ingest and the materializers:
// the change-event envelope, source positions (PostgreSQL LSN, MySQL GTID
// set), progress markers, their encodings and golden test vectors.
package schemas
