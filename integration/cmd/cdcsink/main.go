// Command cdcsink is a test seam: it runs the real PostgreSQL reader and
// ingest pipeline into a bus that appends every batch to a file and fsyncs
// before acknowledging, so its acknowledgements survive a kill -9 of this
// process. The crash test in package integration drives it.
//
//	cdcsink -url postgres://... -slot s -pub p -file out.jsonl
//
// Each line of the file is {"change": <change envelope>} or
// {"progress": <marker>}; a progress line follows the changes of its batch
// and is written before the batch is acknowledged. On start the file's last
// progress marker is where the pipeline resumes.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/freshetdb/freshet/connectors/postgres"
	"github.com/freshetdb/freshet/ingest"
	"github.com/freshetdb/freshet/schemas"
)

func main() {
	cfg := postgres.Config{Name: "origin"}
	var path string
	var resume bool
	flag.StringVar(&cfg.URL, "url", "", "replication role URL")
	flag.StringVar(&cfg.Slot, "slot", "", "replication slot")
	flag.StringVar(&cfg.Publication, "pub", "", "publication")
	flag.StringVar(&path, "file", "", "output file")
	flag.DurationVar(&cfg.StatusInterval, "status-interval", 100*time.Millisecond, "standby status interval")
	flag.BoolVar(&resume, "resume", true, "resume after the file's last progress marker; false starts at the slot's position, so the origin re-sends what the slot was not told")
	flag.Parse()
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, path, resume); err != nil && !errors.Is(err, context.Canceled) {
		fmt.Fprintln(os.Stderr, "cdcsink:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, cfg postgres.Config, path string, resume bool) error {
	bus, from, err := openFileBus(path)
	if err != nil {
		return err
	}
	if !resume {
		from = schemas.Position{}
	}
	defer bus.f.Close()
	if _, err := postgres.Setup(ctx, cfg, from); err != nil {
		return err
	}
	reader, err := postgres.NewReader(cfg)
	if err != nil {
		return err
	}
	pipe, err := ingest.New(ingest.Config{Source: reader, Bus: bus, Name: cfg.Name, From: from, Logger: cfg.Logger})
	if err != nil {
		return err
	}
	return pipe.Run(ctx)
}

// fileBus is an ingest.Bus whose durability is an fsync.
type fileBus struct {
	f *os.File
}

// openFileBus drops a torn last line (a write cut short by a crash) and
// returns the last progress marker's position.
func openFileBus(path string) (*fileBus, schemas.Position, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, schemas.Position{}, err
	}
	var from schemas.Position
	var good int64
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		var line struct {
			Progress *schemas.Progress `json:"progress"`
		}
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			break
		}
		good += int64(len(sc.Bytes())) + 1
		if line.Progress != nil {
			from = line.Progress.Position
		}
	}
	if err := f.Truncate(good); err != nil {
		return nil, from, err
	}
	if _, err := f.Seek(good, 0); err != nil {
		return nil, from, err
	}
	return &fileBus{f: f}, from, nil
}

func (b *fileBus) Publish(_ context.Context, batch *ingest.Batch, done func(error)) error {
	buf := make([]byte, 0, 256*(len(batch.Changes)+1))
	for i := range batch.Changes {
		buf = append(buf, `{"change":`...)
		var err error
		if buf, err = schemas.AppendChange(buf, &batch.Changes[i]); err != nil {
			return err
		}
		buf = append(buf, "}\n"...)
	}
	if batch.Reset != nil {
		r, err := json.Marshal(batch.Reset)
		if err != nil {
			return err
		}
		buf = append(append(append(buf, `{"reset":`...), r...), "}\n"...)
	}
	p, err := json.Marshal(batch.Progress)
	if err != nil {
		return err
	}
	buf = append(append(append(buf, `{"progress":`...), p...), "}\n"...)
	if _, err := b.f.Write(buf); err != nil {
		return err
	}
	if err := b.f.Sync(); err != nil {
		return err
	}
	done(nil)
	return nil
}
