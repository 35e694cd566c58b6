package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cairn-data/cairn/metalog"
	"github.com/cairn-data/cairn/pipeline"
	"github.com/cairn-data/cairn/storage"
)

// pipelineArgHelp is the message for a missing URL argument.
const pipelineArgHelp = "missing URL: give the pipeline's checkpoint location (its Options.Checkpoint), a directory path or a storage URL such as file:///abs/path"

func pipelineStatusCommand() *command {
	var asJSON bool
	return &command{
		name:    "pipeline status",
		args:    "URL",
		nargs:   1,
		argHelp: pipelineArgHelp,
		summary: "list the runs of a resumable pipeline and the stage outputs each holds",
		doc: `
Lists the runs of the resumable pipeline (package pipeline) whose
checkpoint location is URL, the Options.Checkpoint it runs with: a
directory path or a storage URL. First a line

  pipeline NAME at LOCATION: N runs

then each run, oldest first: its ID, its state, when it started and, once
published, when, whether it was a fresh start (Options.Fresh) and whether
its intermediates were kept (Options.KeepIntermediates), and the objects
and bytes stored under it; then one line per stage output it holds, in
pipeline order (fingerprint; complete, or how many partitions are; the
partitions and bytes), and one per published output. A run's state is

  incomplete        not published: the next run resumes it, unless it
                    starts fresh ('cairn pipeline gc' removes it then)
  published         its outputs are in place; its stage outputs remain
                    (kept, retained, or not deleted yet)
  published, intermediates deleted
                    only its records remain
  damaged: ...      its run record cannot be read

A stage a run read from an earlier run's kept output is listed as
"read from run ID" and holds no data of its own.

It reads only and takes no lease: it may run beside a pipeline run, which
it shows as it was at the moment of the listing. A location that holds no
pipeline (no _pipeline object) is an error, exit status 1.

With --json it prints one JSON document instead. Its fields, which later
versions only add to:

  format            1, the version of this document's layout
  pipeline          the pipeline's name
  location          the location's URL
  runs[]            oldest first:
    id                run ID, e.g. "000007"
    state             "incomplete", "published" or "damaged"
    intermediates_deleted  true once a published run's stage outputs are deleted
    intermediates_kept     published with KeepIntermediates
    fresh             started with Options.Fresh
    started           when the run started (RFC 3339); absent if unknown
    finished          when it was published (RFC 3339); absent until then
    objects, bytes    objects stored under the run and their total size
    error             why the run is damaged; absent otherwise
    stages[]          stage outputs, in pipeline order:
      name              stage name
      fingerprint       16 hex digits
      complete          every partition stored and the manifest written
      partitions        the stage's partitions; 0 if unknown
      partitions_done   partitions complete
      objects, bytes    objects of the output in this run and their size
      read_from_run     the run whose output this run read; absent if its own
    outputs[]         published outputs: stage, location, files, rows, bytes`,
		example: `
cairn pipeline status /tmp/etl/checkpoint
cairn pipeline status file:///tmp/etl/checkpoint --json | jq '.runs[-1].state'`,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&asJSON, "json", false, "print a JSON document (fields above) instead of text")
		},
		run: func(ctx context.Context, c *cli, inv *invocation) error {
			return runPipelineStatus(ctx, c, inv.args[0], asJSON)
		},
	}
}

func pipelineGCCommand() *command {
	var (
		olderThan time.Duration
		dryRun    bool
	)
	return &command{
		name:    "pipeline gc",
		args:    "URL",
		nargs:   1,
		argHelp: pipelineArgHelp,
		summary: "remove the abandoned runs and leftover intermediate data of a pipeline",
		doc: `
Removes what abandoned runs left at the checkpoint location URL of a
resumable pipeline (package pipeline; URL is its Options.Checkpoint):

  - incomplete runs that a later run superseded (a fresh start,
    Options.Fresh): no run will resume them;
  - with --older-than D, the latest run too if it is incomplete; without
    it the latest run stays, since the next run resumes it;
  - with --older-than D, the intermediate data (stage outputs) of
    published runs, unless they were kept with Options.KeepIntermediates;
    their records stay, so 'cairn pipeline status' still lists them.
    Without --older-than no published run's data is touched.

With --older-than D, gc removes only runs that started at least D ago and
deletes the data only of runs published at least D ago; the others stay,
superseded or not.

Stage outputs that a remaining run reads (a run restored a stage from an
older run's kept output) are kept, whatever their run.

Before deleting anything, gc takes the location's writer lease, as a
pipeline run does: while a run (or another gc) holds it, gc refuses (exit
status 1) and names the process. It releases the lease when done. With
--dry-run it takes no lease and deletes nothing; what it lists may differ
from what a later gc deletes if a run starts meanwhile.

Prints one line per run, what was removed or deleted and its objects and
size, then "freed N objects, B bytes (SIZE)", or "would free ..." with
--dry-run.

Exit status: 0 when done, 1 when another process holds the lease, URL
holds no pipeline or a deletion failed (after printing what was deleted
before), 2 for a wrong command line.`,
		example: `
cairn pipeline gc /tmp/etl/checkpoint --dry-run
cairn pipeline gc /tmp/etl/checkpoint --older-than 168h`,
		flags: func(fs *flag.FlagSet) {
			fs.DurationVar(&olderThan, "older-than", 0, "remove only what is `D` old or more (a Go duration: 24h, 90m), then including an incomplete latest run and published runs' stage outputs (default 0: superseded incomplete runs only)")
			fs.BoolVar(&dryRun, "dry-run", false, "list what would be removed; delete nothing and take no lease")
		},
		run: func(ctx context.Context, c *cli, inv *invocation) error {
			if olderThan < 0 {
				return usagef(inv.cmd, "--older-than %v is negative: give an age such as 24h, or leave it out", olderThan)
			}
			return runPipelineGC(ctx, c, inv.args[0], olderThan, dryRun)
		},
	}
}

func pipelineDropStageCommand() *command {
	return &command{
		name:    "pipeline drop-stage",
		args:    "URL STAGE",
		nargs:   2,
		argHelp: "give the pipeline's checkpoint location (its Options.Checkpoint) and the name of a stage",
		summary: "delete a stage's stored output in the latest run, so that the next run recomputes it",
		doc: `
Deletes the output of stage STAGE in the latest run at the checkpoint
location URL of a resumable pipeline, as if storage had lost it. The next
run of the pipeline resumes that run and recomputes the stage; stages
downstream whose output is complete are still restored, since the
stage's fingerprint does not change.

Use it when a run stops on a damaged object of a stage (the error names
the object and suggests this command), or in a drill, to see a lost stage
recomputed.

It takes the location's writer lease, as a run does: while a run holds it,
drop-stage refuses (exit status 1) and names the process.

Prints "deleted N objects, B bytes (SIZE) of stage STAGE in run ID".

Exit status: 0 when done, 1 when the run holds no output of STAGE, another
process holds the lease or URL holds no pipeline, 2 for a wrong command
line.`,
		example: `
cairn pipeline drop-stage /tmp/etl/checkpoint enriched`,
		run: func(ctx context.Context, c *cli, inv *invocation) error {
			st, err := openPipelineLocation(ctx, inv.args[0])
			if err != nil {
				return err
			}
			defer st.Close()
			rep, err := pipeline.DropStage(ctx, st, inv.args[1])
			if err != nil {
				return err
			}
			fmt.Fprintf(c.stdout, "deleted %s, %s (%s) of stage %s in run %s\n", plural(rep.Objects, "object"),
				plural64(rep.Bytes, "byte"), humanBytes(rep.Bytes), inv.args[1], strings.Join(rep.Runs, ", "))
			return nil
		},
	}
}

// openPipelineLocation opens a pipeline's checkpoint location for
// reading. A local directory must exist: storage.Open would create it.
func openPipelineLocation(ctx context.Context, loc string) (storage.Storage, error) {
	s, err := storage.OpenExisting(ctx, loc)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("no pipeline checkpoint location at %s: the directory does not exist; give the pipeline's Options.Checkpoint", loc)
	}
	if err != nil {
		return nil, fmt.Errorf("open pipeline checkpoint location %s: %w", loc, err)
	}
	return s, nil
}

// pipelineStatusDoc is the --json document of 'pipeline status'. Field
// names are a stable interface: add fields, never rename or remove them.
type pipelineStatusDoc struct {
	Format   int           `json:"format"`
	Pipeline string        `json:"pipeline"`
	Location string        `json:"location"`
	Runs     []pipelineRun `json:"runs"`
}

type pipelineRun struct {
	ID                   string           `json:"id"`
	State                string           `json:"state"`
	IntermediatesDeleted bool             `json:"intermediates_deleted"`
	IntermediatesKept    bool             `json:"intermediates_kept"`
	Fresh                bool             `json:"fresh"`
	Started              *time.Time       `json:"started,omitempty"`
	Finished             *time.Time       `json:"finished,omitempty"`
	Objects              int              `json:"objects"`
	Bytes                int64            `json:"bytes"`
	Error                string           `json:"error,omitempty"`
	Stages               []pipelineStage  `json:"stages"`
	Outputs              []pipelineOutput `json:"outputs"`
}

type pipelineStage struct {
	Name           string `json:"name"`
	Fingerprint    string `json:"fingerprint"`
	Complete       bool   `json:"complete"`
	Partitions     int    `json:"partitions"`
	PartitionsDone int    `json:"partitions_done"`
	Objects        int    `json:"objects"`
	Bytes          int64  `json:"bytes"`
	ReadFromRun    string `json:"read_from_run,omitempty"`
}

type pipelineOutput struct {
	Stage    string `json:"stage"`
	Location string `json:"location"`
	Files    int    `json:"files"`
	Rows     int64  `json:"rows"`
	Bytes    int64  `json:"bytes"`
}

// runDoc maps a run's status to its JSON form: an enumerated state and
// flags, where RunStatus.State is a sentence for people.
func runDoc(rs pipeline.RunStatus) pipelineRun {
	r := pipelineRun{
		ID: rs.ID, State: rs.State, IntermediatesKept: rs.Kept, Fresh: rs.Fresh,
		Objects: rs.Objects, Bytes: rs.Bytes,
		Stages: []pipelineStage{}, Outputs: []pipelineOutput{},
	}
	switch {
	case rs.Damaged != "":
		r.State, r.Error = "damaged", rs.Damaged
	case rs.Published:
		r.State, r.IntermediatesDeleted = "published", rs.Cleaned
	default:
		r.State = "incomplete"
	}
	if !rs.Started.IsZero() {
		t := rs.Started
		r.Started = &t
	}
	if !rs.Finished.IsZero() {
		t := rs.Finished
		r.Finished = &t
	}
	for _, s := range rs.Stages {
		r.Stages = append(r.Stages, pipelineStage{
			Name: s.Name, Fingerprint: s.Fingerprint, Complete: s.Complete, Partitions: s.Partitions,
			PartitionsDone: s.Done, Objects: s.Objects, Bytes: s.Bytes, ReadFromRun: s.RestoredFrom,
		})
	}
	for _, o := range rs.Outputs {
		r.Outputs = append(r.Outputs, pipelineOutput{Stage: o.Stage, Location: o.Location, Files: o.Files, Rows: o.Rows, Bytes: o.Bytes})
	}
	return r
}

func runPipelineStatus(ctx context.Context, c *cli, loc string, asJSON bool) error {
	st, err := openPipelineLocation(ctx, loc)
	if err != nil {
		return err
	}
	defer st.Close()
	name, runs, err := pipeline.ListRuns(ctx, st)
	if err != nil {
		return err
	}
	if asJSON {
		doc := pipelineStatusDoc{Format: 1, Pipeline: name, Location: st.Location(), Runs: []pipelineRun{}}
		for _, rs := range runs {
			doc.Runs = append(doc.Runs, runDoc(rs))
		}
		enc := json.NewEncoder(c.stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		return enc.Encode(doc)
	}
	fmt.Fprintf(c.stdout, "pipeline %s at %s: %s\n", name, st.Location(), plural(len(runs), "run"))
	for _, rs := range runs {
		fmt.Fprint(c.stdout, rs.String())
	}
	return nil
}

func runPipelineGC(ctx context.Context, c *cli, loc string, olderThan time.Duration, dryRun bool) error {
	st, err := openPipelineLocation(ctx, loc)
	if err != nil {
		return err
	}
	defer st.Close()
	// ListRuns refuses a location without a pipeline, before GC would take
	// a lease in it; the runs it lists explain a gc that removes nothing.
	_, runs, err := pipeline.ListRuns(ctx, st)
	if err != nil {
		return err
	}
	log := slog.New(&gcHandler{mu: &sync.Mutex{}, out: c.stdout, errOut: c.stderr})
	rep, err := pipeline.GC(ctx, st, pipeline.GCOptions{OlderThan: olderThan, DryRun: dryRun, Logger: log})
	if errors.Is(err, metalog.ErrLeaseHeld) {
		return fmt.Errorf("refusing to gc %s: another process (a pipeline run, or a gc) holds its writer lease; stop it first, or use --dry-run to see what gc would remove.\n%w", loc, err)
	}
	if n := len(runs); err == nil && n > 0 && !runs[n-1].Published && runs[n-1].Damaged == "" && !removed(rep, runs[n-1].ID) {
		how := "gc removes it with --older-than D once it started D ago"
		if olderThan > 0 {
			how = fmt.Sprintf("it started less than --older-than %v ago", olderThan)
		}
		fmt.Fprintf(c.stdout, "kept run %s: it is incomplete and the latest, so the next run resumes it; %s\n", runs[n-1].ID, how)
	}
	total := "freed"
	if dryRun {
		total = "would free"
	}
	fmt.Fprintf(c.stdout, "%s %s, %s (%s)", total, plural(rep.Objects, "object"), plural64(rep.Bytes, "byte"), humanBytes(rep.Bytes))
	if dryRun {
		fmt.Fprint(c.stdout, "; nothing was deleted (--dry-run)")
	}
	fmt.Fprintln(c.stdout)
	return err
}

// removed reports whether the clean-up deleted data of run id.
func removed(rep pipeline.CleanupReport, id string) bool {
	for _, r := range rep.Runs {
		if r == id {
			return true
		}
	}
	return false
}

// gcHandler prints the events of pipeline.GC as the command's output: a
// line per run removed or cleaned ("removed abandoned run 000003 (12
// objects, 4.1 KiB)"), and per stage output kept for another run. Other
// events (the lease's, warnings) go to errOut. Safe for concurrent use.
type gcHandler struct {
	mu          *sync.Mutex
	out, errOut io.Writer
	attrs       []slog.Attr
}

var _ slog.Handler = (*gcHandler)(nil)

func (h *gcHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *gcHandler) WithAttrs(as []slog.Attr) slog.Handler {
	h2 := *h
	h2.attrs = append(h.attrs[:len(h.attrs):len(h.attrs)], as...)
	return &h2
}

func (h *gcHandler) WithGroup(string) slog.Handler { return h }

func (h *gcHandler) Handle(_ context.Context, r slog.Record) error {
	attrs := append([]slog.Attr(nil), h.attrs...)
	r.Attrs(func(a slog.Attr) bool { attrs = append(attrs, a); return true })

	msg, w := r.Message, h.out
	switch {
	case strings.HasPrefix(msg, "pipeline gc: "):
		msg = strings.TrimPrefix(msg, "pipeline gc: ")
	case strings.HasPrefix(msg, "pipeline: "):
		msg = strings.TrimPrefix(msg, "pipeline: ")
	default:
		msg, w = "cairn pipeline gc: "+msg, h.errOut
	}
	var objects, bytes *slog.Value
	var extra []string
	for i, a := range attrs {
		switch {
		case a.Key == "objects" && a.Value.Kind() == slog.KindInt64:
			objects = &attrs[i].Value
		case a.Key == "bytes" && a.Value.Kind() == slog.KindInt64:
			bytes = &attrs[i].Value
		case a.Key == "run" && strings.Contains(msg, a.Value.String()):
		default:
			extra = append(extra, fmt.Sprintf("%s=%v", a.Key, a.Value))
		}
	}
	size := ""
	switch {
	case objects != nil && bytes != nil:
		size = fmt.Sprintf(" (%s, %s)", plural(int(objects.Int64()), "object"), humanBytes(bytes.Int64()))
	case objects != nil:
		extra = append(extra, fmt.Sprintf("objects=%v", *objects))
	case bytes != nil:
		extra = append(extra, fmt.Sprintf("bytes=%v", *bytes))
	}
	line := msg
	if len(extra) > 0 {
		line += ": " + strings.Join(extra, " ")
	}
	line += size
	if r.Level >= slog.LevelWarn {
		w = h.errOut
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := fmt.Fprintln(w, line)
	return err
}
