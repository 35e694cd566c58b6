package pipeline

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/metalog"
	"github.com/cairn-data/cairn/storage"
)

// Status is what a run did with a stage.
type Status string

// Stage statuses.
const (
	// Computed: the stage ran in this invocation (perhaps only the
	// partitions an earlier attempt had not completed).
	Computed Status = "computed"
	// Restored: the stage's complete output was read from checkpoint
	// storage instead of being computed.
	Restored Status = "restored"
	// Skipped: nothing downstream needed the stage, because every stage
	// that reads it was restored.
	Skipped Status = "skipped"
)

// StageReport says what a run did with one stage.
type StageReport struct {
	Name        string
	Fingerprint string
	Status      Status
	// Reason says why a computed stage was computed: "not in checkpoint
	// storage", "resuming: 5 of 8 partitions complete", "version "1" →
	// "2"", "checkpoint policy never", ...
	Reason string
	// Checkpointed is true when the stage's output is in checkpoint
	// storage at the end of the run.
	Checkpointed bool
	// RestoredFrom is the run whose output a restored stage was read from.
	RestoredFrom string
	Partitions   int
	// PartitionsComputed and PartitionsRestored split Partitions for a
	// checkpointed stage.
	PartitionsComputed int
	PartitionsRestored int
	Rows               int64
	Bytes              int64            // checkpointed bytes
	Elapsed            time.Duration    // time spent on the stage in this run
	Saved              time.Duration    // compute time restoring saved (as measured when it was computed)
	Counters           map[string]int64 // Count calls, summed over partitions
}

// Publication is one published output.
type Publication struct {
	Stage       string `json:"stage"`
	Fingerprint string `json:"fingerprint,omitempty"`
	Location    string `json:"location"`
	Files       int    `json:"files"`
	Rows        int64  `json:"rows"`
	Bytes       int64  `json:"bytes"`
}

// Report says what Run did.
type Report struct {
	Pipeline string
	Run      string
	Resumed  bool // an incomplete run was resumed
	// UpToDate is true when the latest run had already published every
	// output from the same fingerprints, and the outputs are in place:
	// nothing was computed or published (see Options.Fresh).
	UpToDate bool
	Stages   []StageReport
	Outputs  []Publication
	Cleanup  CleanupReport // intermediates deleted after publishing
	Elapsed  time.Duration
}

// Stage returns the report of the named stage, or nil.
func (r *Report) Stage(name string) *StageReport {
	for i := range r.Stages {
		if r.Stages[i].Name == name {
			return &r.Stages[i]
		}
	}
	return nil
}

// runner is the state of one Run.
type runner struct {
	p       *Pipeline
	st      storage.Storage
	runs    []*runInfo
	cur     *runInfo
	attempt string
	session *dataset.Session
	prog    *progress
	specs   map[*stage]stageSpec
	fps     map[*stage]string
	data    map[*stage]any // datasets consumers read
	reports map[*stage]*StageReport
	failAt  string
	failPt  int // -1: at stage start
}

// Run runs the pipeline: it resumes the latest incomplete run at the
// checkpoint location (or starts a new one), restores every stage whose
// output for the same fingerprint is complete, computes the others
// partition by partition, publishes the outputs, and deletes the run's
// intermediate stage outputs unless they are kept. It holds the location's
// writer lease throughout, so a second process running the same pipeline
// is refused.
func (p *Pipeline) Run(ctx context.Context) (rep *Report, err error) {
	if p.err != nil {
		return nil, p.err
	}
	if len(p.stages) == 0 {
		return nil, fmt.Errorf("pipeline %s has no stages", p.name)
	}
	start := time.Now()
	o := p.opts
	st := o.Storage
	if st == nil {
		if st, err = storage.Open(ctx, o.Checkpoint); err != nil {
			return nil, fmt.Errorf("pipeline %s: open checkpoint location: %w", p.name, err)
		}
		defer st.Close()
	}
	if err := checkPipelineRecord(ctx, st, p.name, o.Now()); err != nil {
		return nil, err
	}
	lease, err := metalog.AcquireLease(ctx, st, metalog.LeaseOptions{TTL: o.LeaseTTL, Owner: "cairn pipeline " + p.name, Now: o.Now, Logger: o.Logger})
	if err != nil {
		return nil, fmt.Errorf("pipeline %s: %w", p.name, err)
	}
	defer func() {
		if cerr := lease.Close(context.WithoutCancel(ctx)); cerr != nil && err == nil {
			o.Logger.Warn("pipeline: could not release the lease; it lapses at its expiry", "err", cerr)
		}
	}()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() {
		select {
		case <-lease.Lost():
			cancel(fmt.Errorf("pipeline %s: %w: another process took over %s", p.name, metalog.ErrLeaseLost, st.Location()))
		case <-ctx.Done():
		}
	}()

	failStage, failPt, _ := parseFailAt(o.FailAt)
	r := &runner{
		p: p, st: st, prog: newProgress(o.Output, o.Logger),
		specs: map[*stage]stageSpec{}, fps: map[*stage]string{}, data: map[*stage]any{}, reports: map[*stage]*StageReport{},
		failAt: failStage, failPt: failPt,
	}
	if r.attempt, err = newAttempt(); err != nil {
		return nil, err
	}
	rep, err = r.run(ctx)
	if err != nil {
		err = withCorruptHint(err, st.Location())
		if cause := context.Cause(ctx); cause != nil && ctx.Err() != nil && !errors.Is(err, cause) {
			err = fmt.Errorf("%w (%v)", err, cause)
		}
		return rep, err
	}
	rep.Elapsed = time.Since(start)
	if o.Output != nil {
		fmt.Fprint(o.Output, rep.Table())
	}
	return rep, nil
}

func newAttempt() (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}

func (r *runner) run(ctx context.Context) (*Report, error) {
	p, o := r.p, r.p.opts
	log := o.Logger
	runs, err := listRuns(ctx, r.st)
	if err != nil {
		return nil, err
	}
	r.runs = runs
	rep := &Report{Pipeline: p.name}
	var latest *runInfo
	if len(runs) > 0 {
		latest = runs[len(runs)-1]
	}
	// Fingerprints, in pipeline order (inputs come first).
	for _, s := range p.stages {
		spec, err := specOf(s, r.fps)
		if err != nil {
			return rep, err
		}
		r.specs[s], r.fps[s] = spec, spec.fingerprint()
	}
	if latest != nil && latest.published && !o.Fresh {
		if ok, err := r.upToDate(ctx, latest, rep); err != nil || ok {
			return rep, err
		}
	}

	if latest != nil && !latest.published && !o.Fresh {
		r.cur, rep.Resumed = latest, true
		var rec runRecord
		if err := getRecord(ctx, r.st, runRecordObject(latest.id, runObject), &rec); err != nil && !errors.Is(err, storage.ErrNotFound) {
			return nil, fmt.Errorf("pipeline %s: read run %s: %w", p.name, latest.id, err)
		}
		log.Info("pipeline "+p.name+": resuming run "+latest.id, "run", latest.id, "started", rec.Started, "location", r.st.Location())
	} else {
		n := 1
		if latest != nil {
			n = latest.num + 1
		}
		id := formatRunID(n)
		host, _ := os.Hostname()
		rec := runRecord{Pipeline: p.name, Run: id, Started: o.Now().UTC(), Host: host, PID: os.Getpid(), Fresh: o.Fresh}
		if err := putRecord(ctx, r.st, runRecordObject(id, runObject), rec, true); err != nil {
			if errors.Is(err, storage.ErrExists) {
				return nil, fmt.Errorf("pipeline %s: run %s was created by another process at the same time: %w", p.name, id, err)
			}
			return nil, fmt.Errorf("pipeline %s: start run %s: %w", p.name, id, err)
		}
		r.cur = &runInfo{id: id, num: n, hasRecord: true, stages: map[string]map[string]*stageInfo{}}
		msg := "pipeline " + p.name + ": starting run " + id
		if latest != nil && !latest.published {
			msg += " (fresh: run " + latest.id + " stays incomplete; 'cairn pipeline gc' removes it)"
		}
		log.Info(msg, "run", id, "location", r.st.Location())
	}
	rep.Run = r.cur.id

	// Which stages are complete, and which must run.
	complete := map[*stage]string{} // stage -> run holding its complete output
	for _, s := range p.stages {
		if id, ok := r.findComplete(s); ok {
			complete[s] = id
		}
	}
	needed := map[*stage]bool{}
	consumers := map[*stage]int{}
	for _, s := range p.stages {
		for _, in := range s.inputs {
			consumers[in]++
		}
	}
	for _, s := range p.stages {
		if consumers[s] == 0 {
			needed[s] = true // outputs, published or not
		}
	}
	for _, out := range p.outputs {
		needed[out.stage] = true
	}
	for i := len(p.stages) - 1; i >= 0; i-- {
		s := p.stages[i]
		if needed[s] && complete[s] == "" {
			for _, in := range s.inputs {
				needed[in] = true
			}
		}
	}

	r.session, err = dataset.NewSession(o.Dataset)
	if err != nil {
		return rep, fmt.Errorf("pipeline %s: %w", p.name, err)
	}
	defer r.session.Close(context.WithoutCancel(ctx))

	for _, s := range p.stages {
		sr := &StageReport{Name: s.name, Fingerprint: r.fps[s]}
		r.reports[s] = sr
		switch {
		case !needed[s]:
			sr.Status = Skipped
			sr.Checkpointed = complete[s] != ""
			log.Info("stage "+s.name+": skipped", "stage", s.name, "reason", "every stage that reads it is restored")
		case complete[s] != "":
			if err := r.restore(ctx, s, complete[s], sr); err != nil {
				return rep, err
			}
		default:
			if err := r.compute(ctx, s, sr); err != nil {
				return rep, err
			}
		}
		rep.Stages = append(rep.Stages, *sr)
	}

	for _, out := range p.outputs {
		pub, err := r.publish(ctx, out)
		if err != nil {
			return rep, err
		}
		rep.Outputs = append(rep.Outputs, pub)
	}
	if err := putRecord(ctx, r.st, runRecordObject(r.cur.id, publishedObject),
		publishedRecord{Finished: o.Now().UTC(), Outputs: rep.Outputs, Kept: o.KeepIntermediates}, false); err != nil {
		return rep, fmt.Errorf("pipeline %s: record run %s published: %w", p.name, r.cur.id, err)
	}
	log.Info("pipeline "+p.name+": run "+r.cur.id+" published", "run", r.cur.id, "outputs", len(rep.Outputs))
	return rep, r.retain(ctx, r.cur.id, o.KeepIntermediates, rep)
}

// retain applies the retention policy after run id published (or was
// found up to date), and records what it deleted in rep. A failure is
// logged, not returned: the output is published, and what is left is
// garbage for gc.
func (r *runner) retain(ctx context.Context, id string, keep bool, rep *Report) error {
	p, o, log := r.p, r.p.opts, r.p.opts.Logger
	cr, err := applyRetention(ctx, r.st, retention{
		current: id, keepCurrent: keep, runs: o.RetainRuns, for_: o.RetainFor, now: o.Now(), logger: log,
	})
	rep.Cleanup = cr
	if err != nil {
		log.Warn("pipeline "+p.name+": clean-up of intermediate data failed; 'cairn pipeline gc' removes what is left", "run", id, "err", err)
	}
	return nil
}

// upToDate reports whether the latest run, published, made every output
// from the stages' current fingerprints, and the outputs are still in
// place: then there is nothing to do (a pipeline is a set of targets, as
// in Make or Luigi). It also finishes a clean-up the latest run did not
// finish. Pipelines without outputs are never up to date.
func (r *runner) upToDate(ctx context.Context, latest *runInfo, rep *Report) (bool, error) {
	p := r.p
	if len(p.outputs) == 0 {
		return false, nil
	}
	var pub publishedRecord
	if err := getRecord(ctx, r.st, runRecordObject(latest.id, publishedObject), &pub); err != nil {
		return false, fmt.Errorf("pipeline %s: read %s of run %s: %w", p.name, publishedObject, latest.id, err)
	}
	for _, out := range p.outputs {
		found := false
		for _, o := range pub.Outputs {
			if o.Stage == out.stage.name && o.Location == out.location && o.Fingerprint == r.fps[out.stage] {
				found = true
			}
		}
		if !found || !outputPresent(ctx, out.location) {
			return false, nil
		}
	}
	rep.Run, rep.UpToDate, rep.Outputs = latest.id, true, pub.Outputs
	for _, s := range p.stages {
		rep.Stages = append(rep.Stages, StageReport{Name: s.name, Fingerprint: r.fps[s], Status: Skipped, Reason: "up to date"})
	}
	p.opts.Logger.Info("pipeline "+p.name+": up to date: run "+latest.id+" published every output from the same stages and inputs; nothing to do (start a fresh run to recompute)",
		"run", latest.id)
	return true, r.retain(ctx, latest.id, pub.Kept, rep)
}

// outputPresent reports whether a published output is complete at its
// location: its _SUCCESS object exists.
func outputPresent(ctx context.Context, location string) bool {
	if dir, ok := localPath(location); ok {
		_, err := os.Stat(filepath.Join(dir, dataset.SuccessObject))
		return err == nil
	}
	st, err := storage.OpenExisting(ctx, location)
	if err != nil {
		return false
	}
	defer st.Close()
	rc, err := st.Get(ctx, dataset.SuccessObject)
	if err != nil {
		return false
	}
	rc.Close()
	return true
}

// findComplete returns the run holding a complete output of s for its
// fingerprint: the current run, or (unless Fresh) a published run whose
// stage outputs were kept.
func (r *runner) findComplete(s *stage) (string, bool) {
	if s.opts.Checkpoint.never {
		return "", false
	}
	fp := r.fps[s]
	if si := r.cur.stage(s.name, fp); si != nil && si.hasManifest {
		return r.cur.id, true
	}
	if r.p.opts.Fresh {
		return "", false
	}
	for i := len(r.runs) - 1; i >= 0; i-- {
		run := r.runs[i]
		if run == r.cur || !run.published || run.cleaned {
			continue
		}
		if si := run.stage(s.name, fp); si != nil && si.hasManifest {
			return run.id, true
		}
	}
	return "", false
}

// restore opens a complete stage output for the stages that read it.
func (r *runner) restore(ctx context.Context, s *stage, from string, sr *StageReport) error {
	t0 := time.Now()
	dir := stageDir(from, s.name, r.fps[s])
	if from != r.cur.id {
		// Record the reference before reading, so that clean-up of the
		// other run keeps the output while this run needs it.
		ref := refRecord{Run: from, Stage: s.name, Fingerprint: r.fps[s]}
		if err := putRecord(ctx, r.st, refObject(r.cur.id, s.name), ref, false); err != nil {
			return fmt.Errorf("pipeline %s: stage %s: record the reference to run %s: %w", r.p.name, s.name, from, err)
		}
		sr.RestoredFrom = from
	}
	m, err := dataset.ReadManifest(ctx, r.st, dir)
	if err != nil {
		return fmt.Errorf("pipeline %s: stage %s: restore from %s: %w", r.p.name, s.name, dir, err)
	}
	d, err := s.ops.open(ctx, r.session, r.st, dir)
	if err != nil {
		return fmt.Errorf("pipeline %s: stage %s: restore: %w", r.p.name, s.name, err)
	}
	var stats statsRecord
	if err := getRecord(ctx, r.st, stageObject(from, s.name, r.fps[s], statsObject), &stats); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("pipeline %s: stage %s: %w", r.p.name, s.name, err)
	}
	r.data[s] = d
	sr.Status, sr.Checkpointed = Restored, true
	sr.Partitions, sr.PartitionsRestored = len(m.Partitions), len(m.Partitions)
	for _, pi := range m.Partitions {
		sr.Rows += pi.Records
		sr.Bytes += pi.Bytes
	}
	sr.Counters = stats.Counters
	sr.Elapsed = time.Since(t0)
	sr.Saved = max(0, time.Duration(stats.ElapsedNS)-sr.Elapsed)
	args := []any{"stage", s.name, "rows", sr.Rows, "partitions", sr.Partitions, "bytes", sr.Bytes, "saved", sr.Saved.Round(time.Millisecond)}
	if from != r.cur.id {
		args = append(args, "from_run", from)
	}
	r.p.opts.Logger.Info("stage "+s.name+": restored", args...)
	return nil
}

// compute runs a stage whose output is not complete.
func (r *runner) compute(ctx context.Context, s *stage, sr *StageReport) error {
	t0 := time.Now()
	o := r.p.opts
	fp := r.fps[s]
	sr.Status, sr.Reason = Computed, r.reasonFor(ctx, s)
	if err := r.dropStale(ctx, s); err != nil {
		return err
	}
	ins := make([]any, len(s.inputs))
	for i, in := range s.inputs {
		ins[i] = r.data[in]
	}
	o.Logger.Info("stage "+s.name+": computing", "stage", s.name, "reason", sr.Reason, "fingerprint", fp)
	if r.failAt == s.name && r.failPt < 0 {
		return r.fail(s.name)
	}
	d, err := s.build(ctx, r.session, ins)
	if err != nil {
		return fmt.Errorf("pipeline %s: stage %s: %w", r.p.name, s.name, err)
	}
	if d == nil || s.ops.partitions(d) <= 0 {
		return fmt.Errorf("pipeline %s: stage %s: the stage function returned no dataset", r.p.name, s.name)
	}
	if n := s.opts.Partitions; n > 0 && s.ops.partitions(d) != n {
		d = s.ops.repartition(d, n)
	}
	sr.Partitions = s.ops.partitions(d)
	policy := s.opts.Checkpoint

	if !policy.never && policy.longer == 0 {
		return r.checkpoint(ctx, s, d, sr, t0)
	}
	// Never, or IfLongerThan: compute into the cache and time it.
	cs := &counterSet{}
	d = s.ops.cache(d)
	rows, err := s.ops.count(withCounters(ctx, cs), d)
	if err != nil {
		return fmt.Errorf("pipeline %s: stage %s: %w", r.p.name, s.name, err)
	}
	took := time.Since(t0)
	if policy.longer > 0 && took >= policy.longer {
		sr.Reason += fmt.Sprintf("; ran %v, over %v: checkpointed", took.Round(time.Millisecond), policy.longer)
		// The counts were made by the timing pass, not per partition.
		sr.Counters = cs.snapshot()
		return r.checkpoint(ctx, s, d, sr, t0)
	}
	if policy.longer > 0 {
		sr.Reason += fmt.Sprintf("; ran %v, under %v: not checkpointed", took.Round(time.Millisecond), policy.longer)
	}
	r.data[s] = d
	sr.Rows, sr.PartitionsComputed, sr.Counters = rows, sr.Partitions, cs.snapshot()
	sr.Elapsed = time.Since(t0)
	o.Logger.Info("stage "+s.name+": computed", "stage", s.name, "rows", sr.Rows, "partitions", sr.Partitions,
		"checkpointed", false, "elapsed", sr.Elapsed.Round(time.Millisecond), "reason", sr.Reason)
	return nil
}

// checkpoint writes the stage's output partition by partition into the
// current run, skipping partitions an earlier attempt completed.
func (r *runner) checkpoint(ctx context.Context, s *stage, d any, sr *StageReport, t0 time.Time) error {
	o := r.p.opts
	fp := r.fps[s]
	dir := stageDir(r.cur.id, s.name, fp)
	if err := r.startStageDir(ctx, s, dir, sr); err != nil {
		return err
	}
	var mu sync.Mutex
	var reusedElapsed time.Duration
	r.prog.start(s.name, sr.Partitions)
	res, err := s.ops.write(ctx, d, r.st, dir, dataset.ResumableOptions{
		Attempt:     r.attempt,
		Compression: s.opts.Compression,
		BeforePartition: func(ctx context.Context, part int) (context.Context, error) {
			o.Logger.Debug("partition computing", "stage", s.name, "partition", part)
			return withCounters(ctx, &counterSet{}), nil
		},
		AfterStored: func(ctx context.Context, part int) error {
			if r.failAt == s.name && r.failPt == part {
				return r.fail(fmt.Sprintf("%s:%d", s.name, part))
			}
			return nil
		},
		Counters: func(ctx context.Context, part int) map[string]int64 {
			return countersOf(ctx).snapshot()
		},
		OnPartition: func(pd dataset.PartDone, computed bool) {
			if !computed {
				mu.Lock()
				reusedElapsed += pd.Elapsed()
				mu.Unlock()
			}
			r.prog.partition(s.name, pd, computed)
		},
	})
	r.prog.finish(s.name)
	if err != nil {
		return fmt.Errorf("pipeline %s: stage %s: %w", r.p.name, s.name, err)
	}
	sr.Checkpointed = true
	sr.PartitionsComputed, sr.PartitionsRestored = len(res.Computed), len(res.Reused)
	base := sr.Counters
	sr.Counters = map[string]int64{}
	for k, v := range base {
		sr.Counters[k] += v
	}
	for _, pd := range res.Parts {
		sr.Rows += pd.Records
		sr.Bytes += pd.Bytes
		for k, v := range pd.Counters {
			sr.Counters[k] += v
		}
	}
	if len(sr.Counters) == 0 {
		sr.Counters = nil
	}
	if len(res.Reused) > 0 {
		sr.Saved = reusedElapsed / time.Duration(max(1, min(r.session.Options().Parallelism, sr.Partitions)))
	}
	sr.Elapsed = time.Since(t0)
	stats := statsRecord{Rows: sr.Rows, Bytes: sr.Bytes, ElapsedNS: int64(sr.Elapsed + sr.Saved), Counters: sr.Counters, Finished: o.Now().UTC()}
	if err := putRecord(ctx, r.st, dir+"/"+statsObject, stats, false); err != nil {
		return fmt.Errorf("pipeline %s: stage %s: %w", r.p.name, s.name, err)
	}
	out, err := s.ops.open(ctx, r.session, r.st, dir)
	if err != nil {
		return fmt.Errorf("pipeline %s: stage %s: %w", r.p.name, s.name, err)
	}
	r.data[s] = out
	o.Logger.Info("stage "+s.name+": computed", "stage", s.name, "rows", sr.Rows, "partitions", sr.Partitions,
		"computed_partitions", sr.PartitionsComputed, "restored_partitions", sr.PartitionsRestored,
		"bytes", sr.Bytes, "elapsed", sr.Elapsed.Round(time.Millisecond), "removed_unfinished_parts", res.Removed)
	return nil
}

// startStageDir records the stage's spec and partition count in its
// directory before any partition is written. A partial output made with
// another partition count (the stage's function partitions differently
// now, for the same fingerprint: a changed -partitions flag, say) cannot
// be resumed partition by partition: it is deleted first.
func (r *runner) startStageDir(ctx context.Context, s *stage, dir string, sr *StageReport) error {
	o := r.p.opts
	rec := stageRecord{Spec: r.specs[s], Index: s.index, Partitions: sr.Partitions, Policy: s.opts.Checkpoint.String(), Started: o.Now().UTC()}
	var old stageRecord
	err := getRecord(ctx, r.st, dir+"/"+specObject, &old)
	switch {
	case err == nil && old.Partitions == rec.Partitions:
		return nil
	case err == nil:
		n, b, err := deletePrefix(ctx, r.st, dir+"/", false)
		if err != nil {
			return fmt.Errorf("pipeline %s: stage %s: delete the partial output of %d partitions: %w", r.p.name, s.name, old.Partitions, err)
		}
		sr.Reason = fmt.Sprintf("partitions changed %d → %d: the partial output cannot be resumed", old.Partitions, rec.Partitions)
		sr.PartitionsRestored = 0
		o.Logger.Warn("stage "+s.name+": "+sr.Reason+"; deleted it", "stage", s.name, "objects", n, "bytes", b)
	case errors.Is(err, storage.ErrNotFound):
	default:
		return fmt.Errorf("pipeline %s: stage %s: %w", r.p.name, s.name, err)
	}
	if err := putRecord(ctx, r.st, dir+"/"+specObject, rec, false); err != nil {
		return fmt.Errorf("pipeline %s: stage %s: %w", r.p.name, s.name, err)
	}
	return nil
}

// reasonFor says why stage s must be computed.
func (r *runner) reasonFor(ctx context.Context, s *stage) string {
	if s.opts.Checkpoint.never {
		return "checkpoint policy never"
	}
	fp := r.fps[s]
	if si := r.cur.stage(s.name, fp); si != nil && si.done > 0 {
		return fmt.Sprintf("resuming: %d partitions complete", si.done)
	}
	// An output of another fingerprint: in this run, or a kept run.
	cands := []*runInfo{r.cur}
	for i := len(r.runs) - 1; i >= 0; i-- {
		if run := r.runs[i]; run != r.cur && run.published && !run.cleaned {
			cands = append(cands, run)
		}
	}
	for _, run := range cands {
		fps := make([]string, 0, len(run.stages[s.name]))
		for ofp, si := range run.stages[s.name] {
			if ofp != fp && si.hasSpec {
				fps = append(fps, ofp)
			}
		}
		sort.Strings(fps)
		for _, ofp := range fps {
			var old stageRecord
			if err := getRecord(ctx, r.st, stageObject(run.id, s.name, ofp, specObject), &old); err == nil {
				where := "since run " + run.id
				if run == r.cur {
					where = "since this run's last attempt"
				}
				return "changed " + where + ": " + diffSpecs(old.Spec, r.specs[s])
			}
		}
	}
	if r.p.opts.Fresh {
		return "fresh run"
	}
	return "not in checkpoint storage"
}

// dropStale deletes outputs of s in the current run made for another
// fingerprint: no run can use them any more.
func (r *runner) dropStale(ctx context.Context, s *stage) error {
	for ofp := range r.cur.stages[s.name] {
		if ofp == r.fps[s] {
			continue
		}
		n, b, err := deletePrefix(ctx, r.st, stageDir(r.cur.id, s.name, ofp)+"/", false)
		if err != nil {
			return fmt.Errorf("pipeline %s: stage %s: delete the output of fingerprint %s: %w", r.p.name, s.name, ofp, err)
		}
		r.p.opts.Logger.Info("stage "+s.name+": deleted the output of its old fingerprint", "stage", s.name, "fingerprint", ofp, "objects", n, "bytes", b)
		delete(r.cur.stages[s.name], ofp)
	}
	return nil
}

// fail stops the process at a FailAt point.
func (r *runner) fail(point string) error {
	r.prog.finish("")
	r.p.opts.Logger.Warn("pipeline "+r.p.name+": CAIRN_FAIL_AT="+point+" reached: exiting as a pre-empted machine would",
		"run", r.cur.id, "status", FailExitStatus)
	r.p.opts.Exit(FailExitStatus)
	return fmt.Errorf("%w at %s", ErrFailInjected, point)
}

// parseFailAt parses "stage" or "stage:partition".
func parseFailAt(s string) (stage string, part int, err error) {
	if s == "" {
		return "", -1, nil
	}
	name, ps, hasPart := strings.Cut(s, ":")
	if !nameRE.MatchString(name) {
		return "", -1, fmt.Errorf("pipeline: FailAt (CAIRN_FAIL_AT) %q: want stage or stage:partition", s)
	}
	if !hasPart {
		return name, -1, nil
	}
	p, err := strconv.Atoi(ps)
	if err != nil || p < 0 {
		return "", -1, fmt.Errorf("pipeline: FailAt (CAIRN_FAIL_AT) %q: the partition must be a number, 0 or more", s)
	}
	return name, p, nil
}

// counterSet holds a partition's counters (see Count).
type counterSet struct {
	mu sync.Mutex
	m  map[string]int64
}

func (c *counterSet) add(name string, n int64) {
	c.mu.Lock()
	if c.m == nil {
		c.m = map[string]int64{}
	}
	c.m[name] += n
	c.mu.Unlock()
}

func (c *counterSet) snapshot() map[string]int64 {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) == 0 {
		return nil
	}
	out := make(map[string]int64, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

type counterKey struct{}

func withCounters(ctx context.Context, c *counterSet) context.Context {
	return context.WithValue(ctx, counterKey{}, c)
}

func countersOf(ctx context.Context) *counterSet {
	c, _ := ctx.Value(counterKey{}).(*counterSet)
	return c
}

// Count adds n to the counter name of the stage partition being computed
// with ctx (the context a stage's FromFunc or MapPartitions function
// gets). Counters are stored with each partition's completion record, so
// the report of a resumed or restored stage still counts every partition
// once: use them for dropped or malformed records. Counts made behind a
// shuffle inside a stage are attributed to the partition that triggered
// the shuffle. Without a stage partition in ctx, Count does nothing.
func Count(ctx context.Context, name string, n int64) {
	if c := countersOf(ctx); c != nil {
		c.add(name, n)
	}
}

// withCorruptHint adds to an error about a damaged stage object what to do:
// drop the stage's output, so that the next run recomputes it.
func withCorruptHint(err error, location string) error {
	var ce *storage.CorruptError
	if !errors.As(err, &ce) {
		return err
	}
	_, rest, ok := strings.Cut(ce.Object, "/stages/")
	if !ok {
		return err
	}
	stage, _, _ := strings.Cut(rest, "/")
	return fmt.Errorf("%w\nThe stored output of stage %s is damaged. To recompute it, run 'cairn pipeline drop-stage %s %s', then start the pipeline again", err, stage, location, stage)
}
