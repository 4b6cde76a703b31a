package kafka

import (
	"time"

	"github.com/freshetdb/freshet/schemas"
)

// SetStageHooks makes p and c report every record's pipeline stages to h
// (from several goroutines). Call it before the first Publish and before Run.
func SetStageHooks(p *Producer, c *Consumer, h func(stage, kind string, pos schemas.Position, kafkaTime time.Time)) {
	p.hook, c.hook = h, h
}
