package kafka

import (
	"time"

	"github.com/freshetdb/freshet/schemas"
)

// Pipeline stages a record passes, for finding where latency goes.
const (
	stageWrite   = "write"   // the producer hands the batch's data to kafka-go
	stageFetched = "fetched" // a partition reader got the record
)

// stageHook is told when a record of the transaction at pos reaches a
// stage; kind is the record's (change, progress, reset), or "" at the
// producer's stages. Benchmarks set it; it is nil otherwise. kafkaTime is
// the record's timestamp (the broker's append time on a LogAppendTime
// topic), set at stageFetched only.
type stageHook func(stage, kind string, pos schemas.Position, kafkaTime time.Time)
