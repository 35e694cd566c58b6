package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sync"

	"github.com/cairn-data/cairn/metalog"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/stream"
)

func cleanCommand() *command {
	var (
		retain int
		dryRun bool
	)
	return &command{
		name:    "checkpoint clean",
		args:    "DIR",
		nargs:   1,
		argHelp: locationArgHelp,
		summary: "delete old log entries and state files of a stopped query, keeping the last N batches",
		doc: `
Frees space in the checkpoint location DIR of a stopped streaming query,
keeping what its last N batches need, as the running query does itself
every batch (Options.RetainBatches; Spark's minBatchesToRetain):

  - the offsets and commits log entries of the batches before the last N
    committed ones are deleted, offsets first, oldest first; the latest
    entry of each log, and a pending batch (written ahead, not committed),
    always stay;
  - every state store gets its maintenance with N retained versions: the
    provider deletes the files that no retained version needs (for
    memstate: deltas and snapshots older than the newest snapshot at or
    below the oldest retained version). When a pending batch already
    committed some state, one more version is kept, the one its replay
    starts from.

A location without a streaming query (no metadata object) gets only the
state store maintenance; its logs, if any, are left alone.

Before deleting anything, clean takes the location's writer lease, as a
query does: while a live query holds it, clean refuses (exit status 1) and
names the process. It releases the lease when done, so the query can start
again at once.

Prints what it keeps (the batches of the logs, the versions of each
store), one line per object deleted, "deleted NAME (SIZE)", then
"freed N objects, B bytes (SIZE)". With --dry-run it takes no lease,
deletes and writes nothing, and prints "would delete NAME (SIZE)" and
"would free N objects, ..." instead; what it lists may differ from what a
later clean deletes if a query runs meanwhile.

Exit status: 0 when done, 1 when a query holds the lease or the location is
damaged (after printing what was deleted before the problem was found), 2
for a wrong command line.`,
		example: `
cairn checkpoint clean /tmp/job/checkpoint --retain 10 --dry-run
cairn checkpoint clean /tmp/job/checkpoint --retain 10`,
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&retain, "retain", 0, "keep the last `N` batches, N >= 1 (required)")
			fs.BoolVar(&dryRun, "dry-run", false, "list what would be deleted; delete nothing")
		},
		run: func(ctx context.Context, c *cli, inv *invocation) error {
			if !inv.set["retain"] {
				return usagef(inv.cmd, "--retain is required: give the number of batches to keep, e.g. --retain 100 as a query keeps by default")
			}
			if retain < 1 {
				return usagef(inv.cmd, "--retain %d is out of range: keep at least the last batch (--retain 1)", retain)
			}
			return runClean(ctx, c, inv.args[0], retain, dryRun)
		},
	}
}

// freed is an object clean deleted, or would delete.
type freed struct {
	name string
	size int64
}

// cleanStorage passes reads to the location, and prints and records
// every deletion and write; with dryRun it deletes and stores nothing.
// Safe for concurrent use.
type cleanStorage struct {
	storage.Storage
	dryRun bool
	sizes  map[string]int64 // object sizes from the listing before clean
	out    io.Writer

	mu      sync.Mutex
	deleted []freed
}

var _ storage.Storage = (*cleanStorage)(nil)

// Put implements storage.Storage: maintenance may write a snapshot.
func (s *cleanStorage) Put(ctx context.Context, name string, r io.Reader, opts storage.PutOptions) error {
	verb := "wrote"
	if s.dryRun {
		verb = "would write"
		io.Copy(io.Discard, r)
	} else if err := s.Storage.Put(ctx, name, r, opts); err != nil {
		return err
	}
	s.mu.Lock()
	fmt.Fprintf(s.out, "%s %s\n", verb, name)
	s.mu.Unlock()
	return nil
}

// Delete implements storage.Storage.
func (s *cleanStorage) Delete(ctx context.Context, name string) error {
	verb := "deleted"
	if s.dryRun {
		verb = "would delete"
	} else if err := s.Storage.Delete(ctx, name); err != nil {
		return err
	}
	s.mu.Lock()
	s.deleted = append(s.deleted, freed{name, s.sizes[name]})
	fmt.Fprintf(s.out, "%s %s (%s)\n", verb, name, humanBytes(s.sizes[name]))
	s.mu.Unlock()
	return nil
}

func runClean(ctx context.Context, c *cli, loc string, retain int, dryRun bool) error {
	s, err := openLocation(ctx, loc)
	if err != nil {
		return err
	}
	defer s.Close()
	var lease *metalog.Lease
	if !dryRun {
		lease, err = metalog.AcquireLease(ctx, s, metalog.LeaseOptions{Owner: "cairn checkpoint clean",
			Logger: slog.New(slog.NewTextHandler(c.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		var held *metalog.LeaseHeldError
		if errors.As(err, &held) {
			return fmt.Errorf("refusing to clean %s: a query is running on it (pid %d on host %s holds its lease); stop it first, or use --dry-run to see what clean would delete.\n%w",
				loc, held.PID, held.Host, err)
		}
		if err != nil {
			return fmt.Errorf("clean %s: %w", loc, err)
		}
		defer func() {
			if err := lease.Close(context.WithoutCancel(ctx)); err != nil {
				fmt.Fprintf(c.stderr, "cairn: %v\n", err)
			}
		}()
	}
	objs, err := s.List(ctx, "")
	if err != nil {
		return fmt.Errorf("list checkpoint location %s: %w", s.Location(), err)
	}
	cs := &cleanStorage{Storage: s, dryRun: dryRun, sizes: map[string]int64{}, out: c.stdout}
	for _, o := range objs {
		cs.sizes[o.Name] = o.Size
	}
	err = clean(ctx, c, cs, objs, retain, lease) // the summary also when it failed part-way

	var bytes int64
	for _, f := range cs.deleted {
		bytes += f.size
	}
	total := "freed"
	if dryRun {
		total = "would free"
	}
	fmt.Fprintf(c.stdout, "%s %s, %s (%s)", total, plural(len(cs.deleted), "object"), plural64(bytes, "byte"), humanBytes(bytes))
	if dryRun {
		fmt.Fprint(c.stdout, "; nothing was deleted (--dry-run)")
	}
	fmt.Fprintln(c.stdout)
	return err
}

// clean purges the query's logs, then maintains every state store, through
// cs. lease, when not nil, is checked before each step.
func clean(ctx context.Context, c *cli, cs *cleanStorage, objs []storage.ObjectInfo, retain int, lease *metalog.Lease) error {
	checkLease := func() error {
		if lease == nil {
			return nil
		}
		select {
		case <-lease.Lost():
			return fmt.Errorf("stopped cleaning %s: %w", cs.Location(), lease.Err())
		default:
			return nil
		}
	}
	lastCommit, hasCommit := int64(-1), false
	if hasObject(objs, stream.MetadataObject) {
		meta, err := stream.ReadMetadata(ctx, cs)
		if err != nil {
			return fmt.Errorf("cannot clean %s: %w; run 'cairn checkpoint verify'", cs.Location(), err)
		}
		q := openQueryLogs(ctx, cs)
		for _, err := range []error{q.offsetsErr, q.commitsErr} {
			if err != nil {
				return fmt.Errorf("cannot clean %s: %w", cs.Location(), err)
			}
		}
		lastCommit, hasCommit = q.lastCommit, q.hasCommit
		if hasCommit && (!q.hasOff || q.lastCommit > q.lastOff) {
			return fmt.Errorf("cannot clean %s: batch %d is committed but the offsets log ends before it: the location is damaged; run 'cairn checkpoint verify'", cs.Location(), q.lastCommit)
		}
		if !hasCommit {
			fmt.Fprintf(c.stdout, "query %s: no batch is committed; the offsets and commits logs stay as they are\n", meta.QueryID)
		} else {
			before := max(lastCommit-int64(retain)+1, 0)
			keep := fmt.Sprintf("batches %d to %d", before, lastCommit)
			if before == lastCommit {
				keep = fmt.Sprintf("batch %d", before)
			}
			if p, ok := q.pending(); ok {
				keep += fmt.Sprintf(" and pending batch %d", p)
			}
			fmt.Fprintf(c.stdout, "query %s: keeping %s in the offsets and commits logs\n", meta.QueryID, keep)
			if err := checkLease(); err != nil {
				return err
			}
			// Offsets first: a crash between the two leaves commits that
			// reach further back than offsets, which a restart accepts.
			if err := q.offsets.Purge(ctx, before); err != nil {
				return err
			}
			if err := q.commits.Purge(ctx, before); err != nil {
				return err
			}
		}
	} else if hasPrefix(objs, stream.OffsetsLog+"/") || hasPrefix(objs, stream.CommitsLog+"/") {
		fmt.Fprintf(c.stdout, "no streaming query here (no %s object): the offsets and commits logs stay as they are\n", stream.MetadataObject)
	}

	stores, _ := findStores(objs)
	quiet := slog.New(slog.DiscardHandler)
	for _, st := range stores {
		if err := checkLease(); err != nil {
			return err
		}
		meta, err := state.ReadMeta(ctx, cs, st.id)
		if err != nil {
			return fmt.Errorf("state store %s: cannot read its metadata: %w; run 'cairn checkpoint verify'", st.dir, err)
		}
		if err := maintainStore(ctx, c.stdout, cs, st, meta, retain, lastCommit, hasCommit, quiet); err != nil {
			return fmt.Errorf("state store %s: %w", st.dir, err)
		}
	}
	return nil
}

// maintainStore runs a store's maintenance with retain versions kept, or
// more when a pending batch committed state beyond the last committed
// batch: the replay of that batch loads version lastCommit+1. It returns
// what it keeps to w first.
func maintainStore(ctx context.Context, w io.Writer, s storage.Storage, st storeRef, meta state.Meta, retain int, lastCommit int64, hasCommit bool, logger *slog.Logger) error {
	open := func(keep int) (state.Provider, error) {
		return state.Open(ctx, meta.Provider, s, st.id, meta.Schema, state.Options{RetainVersions: keep, MaintenanceInterval: -1, Logger: logger})
	}
	p, err := open(retain)
	if err != nil {
		return err
	}
	latest, err := p.LatestVersion(ctx)
	if err != nil {
		p.Close()
		return err
	}
	keep, why := retain, ""
	if need := latest - lastCommit; hasCommit && need > int64(retain) {
		keep, why = int(need), fmt.Sprintf(" (pending batch %d committed state: its replay starts from version %d)", lastCommit+1, lastCommit+1)
		p.Close()
		if p, err = open(keep); err != nil {
			return err
		}
	}
	defer p.Close()
	versions := fmt.Sprintf("versions %d to %d", max(latest-int64(keep)+1, 0), latest)
	if keep == 1 || latest == 0 {
		versions = fmt.Sprintf("version %d", latest)
	}
	fmt.Fprintf(w, "state store %s: keeping %s%s\n", st.dir, versions, why)
	return p.Maintain(ctx)
}
