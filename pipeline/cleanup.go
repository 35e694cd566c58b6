package pipeline

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/metalog"
	"github.com/cairn-data/cairn/storage"
)

// CleanupReport says what a clean-up deleted, or would delete in a dry
// run.
type CleanupReport struct {
	Runs    []string // runs whose data was deleted
	Objects int
	Bytes   int64
	DryRun  bool
}

func (c *CleanupReport) add(run string, objects int, bytes int64) {
	if objects == 0 {
		return
	}
	if len(c.Runs) == 0 || c.Runs[len(c.Runs)-1] != run {
		c.Runs = append(c.Runs, run)
	}
	c.Objects += objects
	c.Bytes += bytes
}

// deletePrefix deletes every object under prefix, checkpoint manifests
// first, so that a crash midway never leaves a manifest naming a deleted
// part. In a dry run it only counts.
func deletePrefix(ctx context.Context, st storage.Storage, prefix string, dryRun bool) (int, int64, error) {
	objs, err := st.List(ctx, prefix)
	if err != nil {
		return 0, 0, err
	}
	sort.SliceStable(objs, func(i, j int) bool {
		return path.Base(objs[i].Name) == dataset.ManifestObject && path.Base(objs[j].Name) != dataset.ManifestObject
	})
	var n int
	var b int64
	for _, o := range objs {
		if !dryRun {
			if err := st.Delete(ctx, o.Name); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return n, b, err
			}
		}
		n++
		b += o.Size
	}
	return n, b, nil
}

// protectedDirs returns the stage directories that runs other than those
// in gone still read (their ref records), so clean-up keeps them.
func protectedDirs(ctx context.Context, st storage.Storage, runs []*runInfo, gone map[string]bool) (map[string]bool, error) {
	out := map[string]bool{}
	for _, r := range runs {
		if gone[r.id] || r.cleaned {
			continue
		}
		for _, name := range r.refs {
			var ref refRecord
			if err := getRecord(ctx, st, refObject(r.id, name), &ref); err != nil {
				if errors.Is(err, storage.ErrNotFound) {
					continue
				}
				return nil, err
			}
			out[stageDir(ref.Run, ref.Stage, ref.Fingerprint)] = true
		}
	}
	return out, nil
}

// cleanRun deletes a published run's intermediate data (its stage outputs
// and references), except directories other runs still read, and then
// records the run cleaned if nothing was kept back.
func cleanRun(ctx context.Context, st storage.Storage, r *runInfo, protected map[string]bool, dryRun bool, now time.Time, log *slog.Logger) (int, int64, error) {
	var n int
	var b int64
	held := false
	names := make([]string, 0, len(r.stages))
	for name := range r.stages {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		for fp := range r.stages[name] {
			dir := stageDir(r.id, name, fp)
			if protected[dir] {
				held = true
				log.Info("pipeline: kept a stage output another run reads", "run", r.id, "stage", name, "fingerprint", fp)
				continue
			}
			dn, db, err := deletePrefix(ctx, st, dir+"/", dryRun)
			n, b = n+dn, b+db
			if err != nil {
				return n, b, fmt.Errorf("pipeline: delete %s: %w", dir, err)
			}
		}
	}
	dn, db, err := deletePrefix(ctx, st, runDir(r.id)+"/refs/", dryRun)
	n, b = n+dn, b+db
	if err != nil {
		return n, b, fmt.Errorf("pipeline: delete the references of run %s: %w", r.id, err)
	}
	if !dryRun && !held {
		if err := putRecord(ctx, st, runRecordObject(r.id, cleanedObject), cleanedRecord{At: now.UTC(), Objects: n, Bytes: b}, false); err != nil {
			return n, b, err
		}
	}
	return n, b, nil
}

// removeRun deletes everything of an abandoned run, its run record last.
func removeRun(ctx context.Context, st storage.Storage, r *runInfo, protected map[string]bool, dryRun bool) (int, int64, error) {
	objs, err := st.List(ctx, runDir(r.id)+"/")
	if err != nil {
		return 0, 0, err
	}
	var tn int
	var tb int64
	var last *storage.ObjectInfo
	sort.SliceStable(objs, func(i, j int) bool {
		return path.Base(objs[i].Name) == dataset.ManifestObject && path.Base(objs[j].Name) != dataset.ManifestObject
	})
	for i, o := range objs {
		if isProtected(o.Name, protected) {
			continue
		}
		if o.Name == runRecordObject(r.id, runObject) {
			last = &objs[i]
			continue
		}
		if !dryRun {
			if err := st.Delete(ctx, o.Name); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return tn, tb, fmt.Errorf("pipeline: delete %s: %w", o.Name, err)
			}
		}
		tn++
		tb += o.Size
	}
	if last != nil && !protectedRun(r.id, protected) {
		if !dryRun {
			if err := st.Delete(ctx, last.Name); err != nil && !errors.Is(err, storage.ErrNotFound) {
				return tn, tb, fmt.Errorf("pipeline: delete %s: %w", last.Name, err)
			}
		}
		tn++
		tb += last.Size
	}
	return tn, tb, nil
}

// isProtected reports whether object is inside a protected directory.
func isProtected(object string, protected map[string]bool) bool {
	for dir := range protected {
		if strings.HasPrefix(object, dir+"/") {
			return true
		}
	}
	return false
}

// protectedRun reports whether a protected directory is inside run id.
func protectedRun(id string, protected map[string]bool) bool {
	for dir := range protected {
		if strings.HasPrefix(dir, runDir(id)+"/") {
			return true
		}
	}
	return false
}

// retention is the policy applied after a run publishes.
type retention struct {
	current     string
	keepCurrent bool
	runs        int
	for_        time.Duration
	now         time.Time
	logger      *slog.Logger
}

// applyRetention deletes the intermediate data of published runs the
// policy does not keep: runs kept with KeepIntermediates stay, as do the
// newest RetainRuns runs and those published within RetainFor.
func applyRetention(ctx context.Context, st storage.Storage, pol retention) (CleanupReport, error) {
	var rep CleanupReport
	runs, err := listRuns(ctx, st)
	if err != nil {
		return rep, err
	}
	var candidates []*runInfo
	kept := 0
	for i := len(runs) - 1; i >= 0; i-- {
		r := runs[i]
		if !r.published || r.cleaned {
			continue
		}
		var pub publishedRecord
		if err := getRecord(ctx, st, runRecordObject(r.id, publishedObject), &pub); err != nil {
			return rep, fmt.Errorf("pipeline: read %s of run %s: %w", publishedObject, r.id, err)
		}
		keep := pub.Kept || (r.id == pol.current && pol.keepCurrent)
		if !keep && kept < pol.runs {
			keep = true
		}
		if !keep && pol.for_ > 0 && pol.now.Sub(pub.Finished) < pol.for_ {
			keep = true
		}
		if keep {
			kept++
			continue
		}
		candidates = append(candidates, r)
	}
	gone := map[string]bool{}
	for _, r := range candidates {
		gone[r.id] = true
	}
	protected, err := protectedDirs(ctx, st, runs, gone)
	if err != nil {
		return rep, err
	}
	for _, r := range candidates {
		n, b, err := cleanRun(ctx, st, r, protected, false, pol.now, pol.logger)
		rep.add(r.id, n, b)
		if err != nil {
			return rep, err
		}
		if n > 0 {
			pol.logger.Info("pipeline: deleted the intermediate data of run "+r.id, "run", r.id, "objects", n, "bytes", b)
		}
	}
	return rep, nil
}

// GCOptions configure GC.
type GCOptions struct {
	// OlderThan limits GC to runs started (for abandoned runs) or
	// published (for leftover intermediates) at least this long ago, and
	// lets it remove the latest run too when it is incomplete and that
	// old. Default 0: remove every abandoned run but the latest, and no
	// published run's data.
	OlderThan time.Duration
	// DryRun reports what would be deleted and deletes nothing.
	DryRun bool
	// Now returns the current time. Default time.Now.
	Now func() time.Time
	// Logger receives what is deleted. Default slog.Default().
	Logger *slog.Logger
}

// GC removes what abandoned runs left at a pipeline's checkpoint location:
// incomplete runs that a later run superseded (a fresh start), the latest
// run too if it is incomplete and older than OlderThan, and with
// OlderThan, the intermediate data of published runs older than that which
// were not kept with KeepIntermediates. Stage outputs that a remaining run
// still reads are kept. Unless DryRun, GC takes the location's writer
// lease, so it never runs beside a pipeline run.
func GC(ctx context.Context, st storage.Storage, opts GCOptions) (CleanupReport, error) {
	if opts.OlderThan < 0 {
		return CleanupReport{}, fmt.Errorf("pipeline: GCOptions.OlderThan is %v; it must be 0 or more", opts.OlderThan)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	rep := CleanupReport{DryRun: opts.DryRun}
	var pr pipelineRecord
	if err := getRecord(ctx, st, pipelineObject, &pr); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return rep, fmt.Errorf("pipeline gc: %s has no %s: it is not a pipeline's checkpoint location: %w", st.Location(), pipelineObject, err)
		}
		return rep, fmt.Errorf("pipeline gc: %w", err)
	}
	if !opts.DryRun {
		lease, err := metalog.AcquireLease(ctx, st, metalog.LeaseOptions{Owner: "cairn pipeline gc", Now: opts.Now, Logger: opts.Logger})
		if err != nil {
			return rep, fmt.Errorf("pipeline gc: %w", err)
		}
		defer lease.Close(context.WithoutCancel(ctx))
	}
	runs, err := listRuns(ctx, st)
	if err != nil {
		return rep, err
	}
	now := opts.Now()
	old := func(t time.Time) bool { return opts.OlderThan == 0 || now.Sub(t) >= opts.OlderThan }
	type action struct {
		r      *runInfo
		remove bool // the whole run; otherwise its intermediates
	}
	var todo []action
	for i, r := range runs {
		latest := i == len(runs)-1
		switch {
		case !r.hasRecord:
			todo = append(todo, action{r, true}) // the rest of a half-removed run
		case !r.published:
			var rec runRecord
			if err := getRecord(ctx, st, runRecordObject(r.id, runObject), &rec); err != nil {
				return rep, fmt.Errorf("pipeline gc: read run %s: %w", r.id, err)
			}
			if (!latest && old(rec.Started)) || (latest && opts.OlderThan > 0 && old(rec.Started)) {
				todo = append(todo, action{r, true})
			}
		case !r.cleaned && opts.OlderThan > 0:
			var pub publishedRecord
			if err := getRecord(ctx, st, runRecordObject(r.id, publishedObject), &pub); err != nil {
				return rep, fmt.Errorf("pipeline gc: read run %s: %w", r.id, err)
			}
			if !pub.Kept && old(pub.Finished) {
				todo = append(todo, action{r, false})
			}
		}
	}
	gone := map[string]bool{}
	for _, a := range todo {
		gone[a.r.id] = true
	}
	protected, err := protectedDirs(ctx, st, runs, gone)
	if err != nil {
		return rep, err
	}
	for _, a := range todo {
		var n int
		var b int64
		if a.remove {
			n, b, err = removeRun(ctx, st, a.r, protected, opts.DryRun)
		} else {
			n, b, err = cleanRun(ctx, st, a.r, protected, opts.DryRun, now, opts.Logger)
		}
		rep.add(a.r.id, n, b)
		if err != nil {
			return rep, err
		}
		what := "removed abandoned run " + a.r.id
		if !a.remove {
			what = "deleted the intermediate data of run " + a.r.id
		}
		if opts.DryRun {
			what = "would have " + what
		}
		opts.Logger.Info("pipeline gc: "+what, "run", a.r.id, "objects", n, "bytes", b)
	}
	return rep, nil
}
