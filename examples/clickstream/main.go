// Command clickstream is cairn's reference streaming job: per user and
// one-minute window of event time, the number of clicks and the sum of
// their amounts. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cairn-data/cairn/examples/clickstream/clicks"
	"github.com/cairn-data/cairn/stream"

	_ "github.com/cairn-data/cairn/storage/s3" // s3:// checkpoint locations
)

func main() {
	var o clicks.Options
	flag.StringVar(&o.Input, "input", "", "directory of `*.jsonl` click files (required)")
	flag.StringVar(&o.Output, "output", "", "output `DIR` or storage URL (required); read it with 'cairn sink read DIR'")
	flag.StringVar(&o.Checkpoint, "checkpoint", "", "checkpoint location `URL` or path (required)")
	trigger := flag.Duration("trigger", 0, "start a batch at most every `DURATION` (0: as fast as possible)")
	flag.IntVar(&o.MaxFilesPerBatch, "max-files-per-batch", 0, "take at most `N` new files per batch (0: all)")
	untilIdle := flag.Bool("until-idle", false, "process what is there, then stop; windows stay open for the next run (use this for scheduled runs)")
	drain := flag.Bool("drain", false, "process what is there, close every open window, then stop for good: the checkpoint is sealed, and a later run that finds new input refuses (use -until-idle for scheduled runs; a new -checkpoint to process more)")
	flag.StringVar(&o.StateProvider, "state", "memory", "state store provider: memory, or pebble (state larger than memory, in a local Pebble database)")
	flag.StringVar(&o.DeadLetter, "dead-letter", "", "set bad input lines, and input files that cannot be read as JSONL, aside in `DIR` (one <file>.jsonl each) and go on; default: stop at the first, naming the file and line")
	flag.Parse()
	if o.Input == "" || o.Output == "" || o.Checkpoint == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: clickstream -input DIR -output DIR -checkpoint URL [-trigger D] [-max-files-per-batch N] [-until-idle] [-drain] [-state memory|pebble] [-dead-letter DIR]")
		os.Exit(2)
	}
	if fi, err := os.Stat(o.Input); err != nil || !fi.IsDir() {
		fmt.Fprintf(os.Stderr, "clickstream: -input %s: not a directory (%v); give the directory the click files arrive in\n", o.Input, errOrNotDir(err))
		os.Exit(1)
	}
	o.Trigger = stream.Trigger{Interval: *trigger, UntilIdle: *untilIdle, Drain: *drain}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	if err := clicks.Run(ctx, o); err != nil && ctx.Err() == nil {
		fmt.Fprintln(os.Stderr, "clickstream:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "clickstream: done in %v\n", time.Since(start).Round(time.Millisecond))
}

func errOrNotDir(err error) error {
	if err != nil {
		return err
	}
	return errors.New("it is a file")
}
