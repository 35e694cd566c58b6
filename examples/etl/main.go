// Command etl is cairn's resumable batch pipeline: orders and customers
// are read, joined, and aggregated per region and day, each stage
// checkpointed partition by partition, so that a run killed at any point
// resumes where it stopped. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/cairn-data/cairn/pipeline"

	_ "github.com/cairn-data/cairn/storage/s3" // s3:// checkpoint locations
)

// Exit statuses.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stderr *os.File) int {
	fs := flag.NewFlagSet("etl", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c config
	fs.StringVar(&c.input, "input", "etl-input", "input `DIR` with orders/*.jsonl and customers/*.jsonl")
	fs.StringVar(&c.output, "output", "etl-output", "output `DIR`: the final output goes to DIR/daily/")
	fs.StringVar(&c.checkpoint, "checkpoint", "etl-checkpoint", "checkpoint location `URL` or path")
	fs.BoolVar(&c.fresh, "fresh", false, "start a new run instead of resuming an incomplete one")
	fs.BoolVar(&c.keep, "keep-intermediates", false, "keep the stage checkpoints after the output is published")
	fs.IntVar(&c.partitions, "partitions", 8, "`N` partitions for the join and the aggregation")
	gen := fs.Int("generate", 0, "write `N` sample orders (and customers) into -input, then exit")
	genFiles := fs.Int("generate-files", 16, "with -generate: spread the orders over `F` files")
	seed := fs.Uint64("seed", 1, "with -generate: the random seed")
	verbose := fs.Bool("v", false, "log every partition stored (debug events too)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if fs.NArg() > 0 || c.partitions < 1 || *gen < 0 || *genFiles < 1 {
		fmt.Fprintln(stderr, "usage: etl [-input DIR] [-output DIR] [-checkpoint URL] [-fresh] [-keep-intermediates] [-partitions N]\n       etl -generate N [-generate-files F] [-seed S] [-input DIR]")
		return exitUsage
	}
	if *gen > 0 {
		if err := generate(c.input, *gen, *genFiles, *seed); err != nil {
			fmt.Fprintln(stderr, "etl:", err)
			return exitFailure
		}
		fmt.Fprintf(stderr, "etl: wrote %d orders in %d files under %s (seed %d)\n", *gen, *genFiles, c.input, *seed)
		return exitOK
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	c.logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	c.out = stderr
	p, err := build(c)
	if err != nil {
		fmt.Fprintln(stderr, "etl:", err)
		return exitUsage
	}
	if _, err := p.Run(ctx); err != nil {
		fmt.Fprintln(stderr, "etl:", err)
		if errors.Is(err, pipeline.ErrFailInjected) {
			return pipeline.FailExitStatus
		}
		return exitFailure
	}
	return exitOK
}
