// Package kafka carries change events through Apache Kafka: a Producer that
// implements ingest.Bus for one source, and a Consumer that feeds one
// regional node from every partition of that source's topic through a
// Handler (the seam the materializer implements). For teams that already
// run Debezium, DecodeDebezium reads Debezium's JSON records and a
// DebeziumConsumer feeds a region from its table topics, without a
// watermark. ADR 0006 records the design.
//
// # Wire format
//
// One topic per source. Every record has a header "freshet-kind": "change"
// (the value is schemas.MarshalChange's JSON), "progress" (a
// schemas.Progress) or "reset" (a schemas.Reset). Row changes are keyed by
// hash(source, schema, table, primary key), so per-key order holds.
// Records without a key (TRUNCATE, schema changes, and updates that move a
// row to another primary key) are written to every partition and the
// consumer treats them as a barrier: it delivers one copy, once every
// partition has reached it. A progress marker X goes to every partition
// behind every change up to X, and is never in a partition's log without
// them: it rides in the same record batch as the partition's changes of X
// (which Kafka appends whole or not at all) or, for writes too large for
// one batch, follows once Kafka acknowledged them. A consumer's watermark
// is the minimum over partitions of the last marker it read.
package kafka
