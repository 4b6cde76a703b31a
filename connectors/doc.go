// Package connectors groups everything that talks to an external system:
// postgres (replication reader, origin pool, catalog), mysql (binlog reader,
// origin client), kafka (producer and consumer) and memory (the embedded
// bus). Each implements interfaces owned by ingest, materialize or serve.
package connectors
