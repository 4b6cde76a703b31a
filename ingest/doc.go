// Package ingest turns a source's replication stream into ordered change
// events and progress markers, publishes them to a bus, and acknowledges to
// the source only what the bus has durably accepted.
package ingest
