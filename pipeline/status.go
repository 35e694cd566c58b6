package pipeline

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cairn-data/cairn/metalog"
	"github.com/cairn-data/cairn/storage"
)

// RunStatus describes one run at a pipeline's checkpoint location.
type RunStatus struct {
	ID    string
	State string // for people: "incomplete", "published", "published, intermediates deleted", or "damaged: ..."
	// Published: the run is complete, its outputs are in place.
	Published bool
	// Cleaned: its intermediate data was deleted.
	Cleaned bool
	// Damaged says why the run's records cannot be read; "" if they can.
	Damaged  string
	Started  time.Time
	Finished time.Time // when published
	Fresh    bool
	Kept     bool // published with KeepIntermediates
	Stages   []StageStatus
	Outputs  []Publication
	Objects  int // objects stored under the run
	Bytes    int64
}

// StageStatus describes one stage output stored in a run.
type StageStatus struct {
	Name        string
	Fingerprint string
	Complete    bool
	Partitions  int // 0 if unknown
	Done        int // partitions complete
	Objects     int
	Bytes       int64
	// RestoredFrom is set for a stage the run read from another run's
	// output instead of storing its own.
	RestoredFrom string
	index        int
}

// ListRuns lists the runs at a pipeline's checkpoint location, oldest
// first, with each stage output they hold. It returns the pipeline's name
// too. It reads only; a run may be in progress.
func ListRuns(ctx context.Context, st storage.Storage) (string, []RunStatus, error) {
	var pr pipelineRecord
	if err := getRecord(ctx, st, pipelineObject, &pr); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return "", nil, fmt.Errorf("pipeline: %s has no %s: it is not a pipeline's checkpoint location: %w", st.Location(), pipelineObject, err)
		}
		return "", nil, err
	}
	runs, err := listRuns(ctx, st)
	if err != nil {
		return pr.Pipeline, nil, err
	}
	out := make([]RunStatus, 0, len(runs))
	for _, r := range runs {
		rs := RunStatus{ID: r.id, Objects: r.objects, Bytes: r.bytes}
		var rec runRecord
		if err := getRecord(ctx, st, runRecordObject(r.id, runObject), &rec); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				rs.Damaged = "no " + runObject + " record: the leftovers of a removal that did not finish; 'cairn pipeline gc' removes them"
			} else {
				rs.Damaged = err.Error()
			}
			rs.State = "damaged: " + rs.Damaged
		}
		rs.Started, rs.Fresh, rs.Published, rs.Cleaned = rec.Started, rec.Fresh, r.published, r.cleaned
		switch {
		case rs.State != "":
		case r.cleaned:
			rs.State = "published, intermediates deleted"
		case r.published:
			rs.State = "published"
		default:
			rs.State = "incomplete"
		}
		if r.published {
			var pub publishedRecord
			if err := getRecord(ctx, st, runRecordObject(r.id, publishedObject), &pub); err == nil {
				rs.Finished, rs.Outputs, rs.Kept = pub.Finished, pub.Outputs, pub.Kept
			}
		}
		for name, fps := range r.stages {
			for fp, si := range fps {
				ss := StageStatus{Name: name, Fingerprint: fp, Complete: si.hasManifest, Done: si.done, Objects: si.objects, Bytes: si.bytes, index: 1 << 30}
				var sr stageRecord
				if err := getRecord(ctx, st, stageObject(r.id, name, fp, specObject), &sr); err == nil {
					ss.Partitions, ss.index = sr.Partitions, sr.Index
				}
				if ss.Complete && ss.Done == 0 {
					ss.Done = ss.Partitions
				}
				rs.Stages = append(rs.Stages, ss)
			}
		}
		for _, name := range r.refs {
			var ref refRecord
			if err := getRecord(ctx, st, refObject(r.id, name), &ref); err == nil {
				ss := StageStatus{Name: name, Fingerprint: ref.Fingerprint, Complete: true, RestoredFrom: ref.Run, index: 1 << 30}
				var sr stageRecord
				if err := getRecord(ctx, st, stageObject(ref.Run, name, ref.Fingerprint, specObject), &sr); err == nil {
					ss.Partitions, ss.Done, ss.index = sr.Partitions, sr.Partitions, sr.Index
				}
				rs.Stages = append(rs.Stages, ss)
			}
		}
		sort.Slice(rs.Stages, func(i, j int) bool {
			a, b := rs.Stages[i], rs.Stages[j]
			if a.index != b.index {
				return a.index < b.index
			}
			return a.Name+a.Fingerprint < b.Name+b.Fingerprint
		})
		out = append(out, rs)
	}
	return pr.Pipeline, out, nil
}

// DropStage deletes stage's output in the latest run at a pipeline's
// checkpoint location, as if checkpoint storage had lost it: the next run
// recomputes the stage (and, since its fingerprint does not change, still
// restores complete stages downstream). For drills, and to recover from a
// damaged stage output. It takes the location's writer lease, so it never
// runs beside a pipeline run. It returns what was deleted.
func DropStage(ctx context.Context, st storage.Storage, stage string) (CleanupReport, error) {
	var rep CleanupReport
	var pr pipelineRecord
	if err := getRecord(ctx, st, pipelineObject, &pr); err != nil {
		return rep, fmt.Errorf("pipeline: %s is not a pipeline's checkpoint location: %w", st.Location(), err)
	}
	lease, err := metalog.AcquireLease(ctx, st, metalog.LeaseOptions{Owner: "cairn pipeline drop-stage"})
	if err != nil {
		return rep, fmt.Errorf("pipeline: drop stage %s: %w", stage, err)
	}
	defer lease.Close(context.WithoutCancel(ctx))
	runs, err := listRuns(ctx, st)
	if err != nil {
		return rep, err
	}
	if len(runs) == 0 {
		return rep, fmt.Errorf("pipeline: %s has no runs", st.Location())
	}
	r := runs[len(runs)-1]
	n, b, err := deletePrefix(ctx, st, stagesDir(r.id)+stage+"/", false)
	rep.add(r.id, n, b)
	if err != nil {
		return rep, err
	}
	for _, name := range r.refs {
		if name == stage {
			if err := st.Delete(ctx, refObject(r.id, name)); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return rep, err
			}
			rep.add(r.id, 1, 0)
		}
	}
	if rep.Objects == 0 {
		return rep, fmt.Errorf("pipeline: run %s in %s holds no output of stage %q", r.id, st.Location(), stage)
	}
	return rep, nil
}

// String formats a run's status for people, one stage a line.
func (rs RunStatus) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "run %s  %s", rs.ID, rs.State)
	if !rs.Started.IsZero() {
		fmt.Fprintf(&b, "  started %s", rs.Started.Format(time.RFC3339))
	}
	if !rs.Finished.IsZero() {
		fmt.Fprintf(&b, ", published %s", rs.Finished.Format(time.RFC3339))
	}
	if rs.Fresh {
		b.WriteString(", fresh")
	}
	if rs.Kept {
		b.WriteString(", intermediates kept")
	}
	fmt.Fprintf(&b, "  (%d objects, %s)\n", rs.Objects, bytesString(rs.Bytes))
	for _, s := range rs.Stages {
		var state string
		switch {
		case s.RestoredFrom != "":
			fmt.Fprintf(&b, "  %-16s %s  complete, read from run %s\n", s.Name, s.Fingerprint, s.RestoredFrom)
			continue
		case s.Complete:
			state = "complete, " + plural(s.Partitions, "partition")
		case s.Partitions > 0:
			state = fmt.Sprintf("incomplete: %d of %s done", s.Done, plural(s.Partitions, "partition"))
		default:
			state = fmt.Sprintf("incomplete: %s done", plural(s.Done, "partition"))
		}
		fmt.Fprintf(&b, "  %-16s %s  %s, %s\n", s.Name, s.Fingerprint, state, bytesString(s.Bytes))
	}
	for _, o := range rs.Outputs {
		fmt.Fprintf(&b, "  published %s → %s (%s rows)\n", o.Stage, o.Location, count(o.Rows))
	}
	return b.String()
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
