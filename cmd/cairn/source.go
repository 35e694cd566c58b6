package main

import (
	"context"
	"fmt"

	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/stream"
)

// sourceDecisionDoc is what 'source skip' and 'source reread' share in
// their help.
const sourceDecisionDoc = `
The decision is recorded in the checkpoint location (an entry of the log
sources/0/decisions/), so that every later attempt and replay of the batch
follows it. A decision never changes what a committed batch read: the
batch that reads FILE is the pending batch (written ahead, not committed:
the one that keeps failing) or the next batch.

It takes the location's writer lease, as a query does: while the query
runs, it refuses (exit status 1) and names the process. Stop the query,
decide, start it again.

FILE is the file's name in the query's input directory, or a path to it.`

func sourceSkipCommand() *command {
	return &command{
		name:    "source skip",
		args:    "DIR FILE",
		nargs:   2,
		argHelp: "give the query's checkpoint location and the name of the input file to skip",
		summary: "make a streaming query's file source skip a file it has taken",
		doc: `
Records, in the checkpoint location DIR of a stopped streaming query whose
source is a file source, that the source skips FILE, a file it has taken:
the batch that reads it gets no records from it. Use it for a file that
fails every attempt of a batch (a bad record or an undecodable file
without a dead-letter destination), or that was deleted or changed after
the query took it.
` + sourceDecisionDoc + `

A file read by a committed batch cannot be skipped: its records are in the
output already. Skipping a file already skipped changes nothing.

Prints what the decision does, for example "skip b.jsonl (file number 1),
recorded in sources/0/decisions/0: pending batch 0, on its next attempt,
will not read it".

Exit status: 0 when recorded (or already recorded), 1 when the file was
not taken, was read by a committed batch, the query is running or DIR
holds no query over a file source, 2 for a wrong command line.`,
		example: `
cairn source skip /tmp/clicks/checkpoint clicks-00042.jsonl`,
		run: func(ctx context.Context, c *cli, inv *invocation) error {
			return decideSource(ctx, c, inv, stream.SkipFile)
		},
	}
}

func sourceRereadCommand() *command {
	return &command{
		name:    "source reread",
		args:    "DIR FILE",
		nargs:   2,
		argHelp: "give the query's checkpoint location and the name of the input file to read again",
		summary: "make a streaming query's file source read a taken file again, as it is now",
		doc: `
Records, in the checkpoint location DIR of a stopped streaming query whose
source is a file source, that the source reads FILE, a file it has taken,
as it is now: use it after fixing a file that failed every attempt of its
batch, or that the query set aside in its dead-letter destination. The
file's size and CRC32C now are recorded; it must not change afterwards.
` + sourceDecisionDoc + `

If a committed batch read the file (say it went whole to the dead-letter
destination), the file is taken again as a new file, read by the next new
batch: records it gave the first time are read a second time.

Prints what the decision does, for example "re-read b.jsonl (file number
1) as it is now (512 bytes), recorded in sources/0/decisions/1: pending
batch 0, on its next attempt, will read it".

Exit status: 0 when recorded, 1 when the file was not taken or is not in
the input directory now, the query is running or DIR holds no query over
a file source, 2 for a wrong command line.`,
		example: `
cairn source reread /tmp/clicks/checkpoint clicks-00042.jsonl`,
		run: func(ctx context.Context, c *cli, inv *invocation) error {
			return decideSource(ctx, c, inv, stream.RereadFile)
		},
	}
}

func decideSource(ctx context.Context, c *cli, inv *invocation, decide func(context.Context, storage.Storage, string) (stream.FileDecision, error)) error {
	st, err := openLocation(ctx, inv.args[0])
	if err != nil {
		return err
	}
	defer st.Close()
	d, err := decide(ctx, st, inv.args[1])
	if err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, d)
	return nil
}
