package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/parquet-go/parquet-go"

	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/stream"
)

func sinkReadCommand() *command {
	var batch int64
	return &command{
		name:    "sink read",
		args:    "DIR",
		nargs:   1,
		argHelp: "missing DIR: give the location of a file sink, a directory path or a storage URL such as file:///abs/path",
		summary: "print the committed rows of a file sink as JSON lines",
		doc: `
Prints the rows of the committed batches of the file sink at DIR (the
output of a streaming query with a stream.FileSink), batch by batch in
batch order, each batch's parts in partition order, one JSON value per
line. Rows of JSONL parts are printed as they are stored; rows of Parquet
parts as JSON objects keyed by column name, in column order:

  {"user":"u7","amount":42}

A batch is committed when its manifest, _manifests/<batch>, exists: parts
of a batch without one (a write cut short) are not printed. Every part is
checked against the size and CRC32C in its manifest before any of its rows
is printed; a mismatch stops the output there with an error naming the
part, and exit status 1. A
DIR without _manifests/ is not a file sink (or no batch was committed to it
yet): exit status 1. Nothing is written to DIR.

A sink that several queries write (stream.FileSinkOptions.IfOwned
"append") is printed owner after owner, in the order they took the sink
(_sink/<generation>); after a "replace", only the output of the queries
from the replacing one on. With --batch N, batch N of each owner is
printed. Batches missing between others (a manifest deleted: that output
is lost) are named in a WARN line on stderr, and the rest is printed.`,
		example: `
cairn sink read /tmp/job/output | head
cairn sink read /tmp/job/output --batch 7`,
		flags: func(fs *flag.FlagSet) {
			fs.Int64Var(&batch, "batch", 0, "print only batch `N` (default: every committed batch)")
		},
		run: func(ctx context.Context, c *cli, inv *invocation) error {
			only := int64(-1)
			if inv.set["batch"] {
				if batch < 0 {
					return usagef(inv.cmd, "--batch %d is negative: batch IDs start at 0", batch)
				}
				only = batch
			}
			return runSinkRead(ctx, c, inv.args[0], only)
		},
	}
}

// openSink opens the location of a file sink for reading. A local
// directory must exist: storage.Open would create it.
func openSink(ctx context.Context, loc string) (storage.Storage, error) {
	s, err := storage.OpenExisting(ctx, loc)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("no file sink at %s: the directory does not exist", loc)
	}
	if err != nil {
		return nil, fmt.Errorf("open file sink %s: %w", loc, err)
	}
	return s, nil
}

// runSinkRead prints the rows of every committed batch, or of batch only
// (>= 0).
func runSinkRead(ctx context.Context, c *cli, loc string, only int64) error {
	st, err := openSink(ctx, loc)
	if err != nil {
		return err
	}
	defer st.Close()
	ix, err := stream.ReadFileSinkIndex(ctx, st)
	if err != nil {
		return err
	}
	var ms []stream.FileSinkManifest
	for _, ns := range ix.Namespaces {
		ms = append(ms, ns.Manifests...)
	}
	if len(ms) == 0 {
		return fmt.Errorf("%s is not a file sink: it has no %s/ (a file sink lists each committed batch in %s/<batch>); if a query writes to it, it has not committed a batch yet",
			loc, stream.FileSinkManifests, stream.FileSinkManifests)
	}
	if gaps := ix.Missing(); gaps != "" {
		fmt.Fprintf(c.stderr, "cairn sink read: WARN: %s has no manifest for %s: that output was lost (a manifest deleted?) and is not printed; 'cairn checkpoint verify CHECKPOINT --sink %s' says more\n",
			loc, gaps, loc)
	}
	if only >= 0 {
		var one []stream.FileSinkManifest
		for _, m := range ms {
			if m.Batch == only {
				one = append(one, m)
			}
		}
		if len(one) == 0 {
			return fmt.Errorf("batch %d of %s is not committed; the committed batches are %s", only, loc, batchList(ms))
		}
		ms = one
	}
	out := bufio.NewWriterSize(c.stdout, 64<<10)
	defer out.Flush() // the rows before an error, too
	for _, m := range ms {
		for _, f := range m.Files {
			data, err := stream.ReadFileSinkPart(ctx, st, f)
			if err != nil {
				return fmt.Errorf("batch %d: %w", m.Batch, err)
			}
			switch {
			case strings.HasSuffix(f.Name, ".jsonl"):
				_, err = out.Write(data)
			case strings.HasSuffix(f.Name, ".parquet"):
				err = printParquet(out, f.Name, data)
			default:
				err = fmt.Errorf("batch %d: part %s is neither .jsonl nor .parquet", m.Batch, f.Name)
			}
			if err != nil {
				return err
			}
		}
	}
	return out.Flush()
}

// batchList says which batches there are: "0 to 7", or "0, 2, 5".
func batchList(ms []stream.FileSinkManifest) string {
	ids := make([]int64, len(ms))
	for i, m := range ms {
		ids[i] = m.Batch
	}
	slices.Sort(ids)
	return stream.BatchRanges(slices.Compact(ids))
}

// printParquet prints each row of a Parquet part as a JSON object keyed by
// column name, in column order.
func printParquet(w io.Writer, name string, data []byte) (err error) {
	defer func() {
		if p := recover(); p != nil { // parquet-go panics on some malformed input
			err = fmt.Errorf("part %s: malformed Parquet (parquet-go panicked: %v)", name, p)
		}
	}()
	pf, err := parquet.OpenFile(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return fmt.Errorf("part %s is not a readable Parquet file: %w", name, err)
	}
	fields := pf.Schema().Fields()
	var line bytes.Buffer
	enc := json.NewEncoder(&line)
	enc.SetEscapeHTML(false) // as the sink writes its JSONL parts
	put := func(v any) error {
		if err := enc.Encode(v); err != nil {
			return err
		}
		line.Truncate(line.Len() - 1) // Encode's newline
		return nil
	}
	r := parquet.NewReader(pf)
	defer r.Close()
	for n := 0; ; n++ {
		row := map[string]any{}
		if err := r.Read(&row); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("part %s row %d: %w", name, n, err)
		}
		line.Reset()
		line.WriteByte('{')
		for i, f := range fields {
			if i > 0 {
				line.WriteByte(',')
			}
			put(f.Name())
			line.WriteByte(':')
			if err := put(row[f.Name()]); err != nil {
				return fmt.Errorf("part %s row %d column %s: %w", name, n, f.Name(), err)
			}
		}
		line.WriteString("}\n")
		if _, err := w.Write(line.Bytes()); err != nil {
			return err
		}
	}
}
