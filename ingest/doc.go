// Package ingest turns a source's replication stream into ordered change
// events and progress markers, publishes them to a bus, and acknowledges to
// the source only what the bus has durably accepted.
//
// A Source (connectors/postgres) emits committed transactions in commit
// order to a Pipeline, which gathers them into Batches for a Bus
// (connectors/memory, later Kafka). The bus reports each batch durable
// asynchronously; the pipeline's Durable position is the highest commit
// position up to which every batch is durable, and it is the only position
// a source may acknowledge to its origin. Transactions the origin re-sends
// after a restart carry their original commit positions and are dropped.
package ingest
