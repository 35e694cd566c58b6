package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/metalog"
	"github.com/cairn-data/cairn/pipeline"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/stream"
)

func verifyCommand() *command {
	var sink string
	return &command{
		name:    "checkpoint verify",
		args:    "DIR",
		nargs:   1,
		argHelp: locationArgHelp,
		summary: "check every byte of a checkpoint location; exit 1 if anything is damaged",
		doc: `
Reads every object of the checkpoint location DIR and checks it fully:

  - the objects of a state store, through the store's provider (the one
    its _meta object names): memstate's deltas and snapshots and pebble's
    changelogs record by record (syntax, lengths, key order); pebble's
    snapshot manifests, and every SST read whole against the size and
    CRC32C the manifests record and the SHA-256 its name gives (an SST
    a manifest lists and storage lacks is named);
  - a pipeline's stage outputs: every part against its completion record
    and the stage's manifest (file, rows, bytes, CRC32C);
  - every other object: its frame: magic, known kind, format version,
    every chunk checksum, the end block, and nothing after it;
  - for each state store (a directory with a _meta object), that its latest
    version loads; a directory with a provider's files and no _meta object
    is named, as no run can open it.

When DIR holds a streaming query (a metadata object, or offsets and
commits logs: a missing metadata object is named), it also checks the
query's bookkeeping, as a restart reads it:

  - the metadata object decodes;
  - the offsets and commits logs open (entry IDs contiguous: a missing entry
    is named) and every entry decodes as an offsets or a commit entry of its
    batch; each batch starts where the one before ended, and the watermark
    never goes back;
  - commits never run ahead of offsets, and no commit below the last one is
    missing; at most one batch is pending (written ahead, not committed);
  - every stateful operator has a state store per partition, at least at
    the version the last committed batch left.

With --sink, it checks the file sink the query writes to (the location of
a stream.FileSink): every manifest _manifests/<batch> decodes, every part
it lists has the size and CRC32C the manifest records, and every batch in
the commits log has a manifest. It also flags manifests that no commit
entry of the query accounts for (above its last commit without an offsets
entry, or written by another query), and a sink whose owner records
(_sink/) do not include this query. Problems in the sink are named
"sink <object in the sink>".

Prints one line per problem, "OBJECT: what is wrong", then a summary line
"checked N objects, X bytes, S state stores[, a streaming query][, a
pipeline (...)][, a file sink of ...]: M problems". An object that none of
these checks knows (no cairn header, a name no provider of this build
writes) is a problem too, reported as "not checked: unknown to this build
of cairn": verify cannot vouch for it, and says so; cairn does not read
it either.

DIR is a directory path or a storage URL. Nothing is written to it, nor
to the sink. Exit status: 0 when the location is sound, 1 when a problem
was found or the location could not be read, 2 for a wrong command line.`,
		example: `
cairn demo --dir /tmp/cairn-demo
cairn checkpoint verify /tmp/cairn-demo/checkpoint
cairn checkpoint verify /tmp/job/checkpoint --sink /tmp/job/output`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&sink, "sink", "", "also check the file sink at `DIR` (a directory path or a storage URL) (default: no sink)")
		},
		run: func(ctx context.Context, c *cli, inv *invocation) error {
			if inv.set["sink"] && sink == "" {
				return usagef(inv.cmd, "--sink needs the location of a file sink")
			}
			return runVerify(ctx, c, inv.args[0], sink)
		},
	}
}

// problem is one finding of verify.
type problem struct {
	object string
	what   string
}

// verifyReport is what verify found in a location.
type verifyReport struct {
	objects  int
	bytes    int64
	stores   int
	query    bool            // the location holds a streaming query
	pipeline *pipeline.Check // what pipeline.Verify found
	sink     *sinkReport
	problems []problem
}

// sinkReport is what verify read of a file sink given with --sink.
type sinkReport struct {
	manifests, parts int
	bytes            int64
}

func runVerify(ctx context.Context, c *cli, loc, sinkLoc string) error {
	s, err := openLocation(ctx, loc)
	if err != nil {
		return err
	}
	defer s.Close()
	rep, err := verifyLocation(ctx, s, sinkLoc)
	if err != nil {
		return err
	}
	for _, p := range rep.problems {
		fmt.Fprintf(c.stdout, "%s: %s\n", p.object, p.what)
	}
	fmt.Fprintln(c.stdout, rep.summary())
	if rep.stores == 0 && rep.objects > 0 {
		if objs, err := s.List(ctx, ""); err == nil {
			if hint := nestedLocationHint(loc, objs); hint != "" {
				fmt.Fprintln(c.stderr, hint)
			}
		}
	}
	if len(rep.problems) > 0 {
		return errReported
	}
	return nil
}

func (r *verifyReport) summary() string {
	what := fmt.Sprintf("%s, %s, %s", plural(r.objects, "object"), plural64(r.bytes, "byte"), plural(r.stores, "state store"))
	if r.query {
		what += ", a streaming query"
	}
	if r.pipeline != nil && r.pipeline.Stages > 0 {
		what += fmt.Sprintf(", a pipeline (%s, %s checked against their records)", plural(r.pipeline.Stages, "stage output"), plural(r.pipeline.Parts, "part"))
	}
	if r.sink != nil {
		what += fmt.Sprintf(", a file sink of %s (%s, %s)", plural(r.sink.manifests, "manifest"), plural(r.sink.parts, "part"), plural64(r.sink.bytes, "byte"))
	}
	return fmt.Sprintf("checked %s: %s", what, plural(len(r.problems), "problem"))
}

func plural(n int, word string) string { return plural64(int64(n), word) }

func plural64(n int64, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

// verifyWorkers bounds the objects read at once: enough to hide the
// latency of an object store, few enough to be gentle with a disk.
const verifyWorkers = 8

// verifyLocation checks every object of s, then the latest version of every
// state store. It returns an error only when the location cannot be
// listed; everything wrong with the contents is a problem in the report,
// objects first in name order, then store directories, stores, the
// query and the sink.
//
// The objects of state stores are checked by their providers, through
// the state.Verifier capability each registers, and the stage outputs of
// a pipeline by pipeline.Verify; every other object must be a cairn
// frame, checked to its end. An object none of them knows is not checked,
// and said to be.
func verifyLocation(ctx context.Context, s storage.Storage, sinkLoc string) (*verifyReport, error) {
	objs, err := s.List(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("list checkpoint location %s: %w", s.Location(), err)
	}
	rep := &verifyReport{objects: len(objs)}
	for _, o := range objs {
		rep.bytes += o.Size
	}

	owned := map[string]bool{} // objects a provider or the pipeline checked
	var found []problem        // problems of objects, sorted by object below
	var dirProblems []problem  // store directories without their metadata
	sc, err := verifyStoreDirs(ctx, s, objs)
	if err != nil {
		return nil, err
	}
	for _, name := range sc.owned {
		owned[name] = true
	}
	found = append(found, sc.problems...)
	dirProblems = sc.dirProblems

	pc, err := pipeline.Verify(ctx, s)
	if err != nil {
		return nil, err
	}
	rep.pipeline = &pc
	for _, name := range pc.Owned {
		owned[name] = true
	}
	for _, p := range pc.Problems {
		found = append(found, problem{p.Object, describeObjectErr(p.Object, p.Err)})
	}

	var rest []storage.ObjectInfo // objects no provider nor the pipeline checked
	for _, o := range objs {
		if !owned[o.Name] {
			rest = append(rest, o)
		}
	}
	what := make([]string, len(rest)) // what is wrong with rest[i], "" when nothing
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(verifyWorkers, len(rest)) {
		wg.Go(func() {
			for i := range next {
				if err := verifyObject(ctx, s, rest[i].Name); err != nil {
					what[i] = describeErr(rest[i].Name, err)
				}
			}
		})
	}
	for i := range rest {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, w := range what {
		if w != "" {
			found = append(found, problem{rest[i].Name, w})
		}
	}
	slices.SortStableFunc(found, func(a, b problem) int { return strings.Compare(a.object, b.object) })
	bad := map[string]bool{}
	for _, p := range found {
		bad[p.object] = true
	}
	rep.problems = append(rep.problems, found...)

	stores, misplaced := findStores(objs)
	for _, name := range misplaced {
		rep.problems = append(rep.problems, problem{name, "store metadata outside a store directory (state/<operator>/<partition>[/<name>]): no store uses it"})
	}
	rep.problems = append(rep.problems, dirProblems...)
	rep.stores = len(stores)
	latest := map[string]int64{} // the latest version of each store that could be opened
	for _, st := range stores {
		if bad[st.dir+"/"+state.MetaObject] {
			continue // reported above; the store cannot be opened
		}
		v, what := checkStore(ctx, s, st)
		if what != "" {
			rep.problems = append(rep.problems, problem{"state store " + st.dir, what})
		}
		if v >= 0 {
			latest[st.dir] = v
		}
	}
	isQuery, queryProblems := checkQuery(ctx, s, objs, bad, latest)
	rep.query = isQuery
	rep.problems = append(rep.problems, queryProblems...)
	if sinkLoc != "" {
		if err := checkSink(ctx, rep, sinkLoc, s); err != nil {
			return nil, err
		}
	}
	return rep, nil
}

// storeDirsCheck is what the providers found in the state store
// directories of a location.
type storeDirsCheck struct {
	owned       []string  // objects a provider checked
	problems    []problem // problems of objects
	dirProblems []problem // directories with provider files but no metadata
}

// verifyStoreDirs has the objects of every directory under state/ checked
// by the provider that wrote them, through its state.Verifier: the one
// its store metadata names, or, when the metadata is missing or cannot be
// read, the providers whose files are there (a missing metadata object is
// a problem of the directory).
func verifyStoreDirs(ctx context.Context, s storage.Storage, objs []storage.ObjectInfo) (storeDirsCheck, error) {
	var out storeDirsCheck
	type dirInfo struct {
		dir       string
		bases     []string
		hasMeta   bool
		providers []string // whose Verifier checks the directory
		named     string   // the provider the metadata names, "" when unknown
	}
	var dirs []*dirInfo
	byDir := map[string]*dirInfo{}
	for _, o := range objs {
		if !strings.HasPrefix(o.Name, "state/") {
			continue
		}
		dir, base := path.Dir(o.Name), path.Base(o.Name)
		d := byDir[dir]
		if d == nil {
			d = &dirInfo{dir: dir}
			byDir[dir] = d
			dirs = append(dirs, d)
		}
		if base == state.MetaObject {
			d.hasMeta = true
		} else {
			d.bases = append(d.bases, base)
		}
	}
	for _, d := range dirs {
		if id, ok := parseStoreDir(d.dir); ok && d.hasMeta {
			if m, err := state.ReadMeta(ctx, s, id); err == nil {
				d.named = m.Provider
				d.providers = []string{m.Provider}
				continue
			}
		}
		// No readable metadata: whose files are these?
		for _, b := range d.bases {
			for _, p := range state.Owners(b) {
				if !slices.Contains(d.providers, p) {
					d.providers = append(d.providers, p)
				}
			}
		}
		if !d.hasMeta && len(d.providers) > 0 {
			out.dirProblems = append(out.dirProblems, problem{d.dir, fmt.Sprintf(
				"holds state files of provider %s but no %s object: the store's metadata is missing, so no run can open it",
				strings.Join(d.providers, " and "), state.MetaObject)})
		}
	}

	type result struct {
		check state.StoreCheck
		err   error
	}
	type job struct {
		d        *dirInfo
		provider string
	}
	var jobs []job
	for _, d := range dirs {
		for _, p := range d.providers {
			jobs = append(jobs, job{d, p})
		}
	}
	results := make([]result, len(jobs))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(verifyWorkers, len(jobs)) {
		wg.Go(func() {
			for i := range next {
				if v, ok := state.VerifierFor(jobs[i].provider); ok {
					results[i].check, results[i].err = v.VerifyStore(ctx, s, jobs[i].d.dir)
				}
			}
		})
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()
	for i, r := range results {
		if r.err != nil {
			return out, fmt.Errorf("check state store %s with provider %s: %w", jobs[i].d.dir, jobs[i].provider, r.err)
		}
		out.owned = append(out.owned, r.check.Owned...)
		for _, p := range r.check.Problems {
			out.problems = append(out.problems, problem{p.Object, describeObjectErr(p.Object, p.Err)})
		}
	}
	// Files of another provider in a store whose metadata names its
	// provider: no run reads them.
	checked := map[string]bool{}
	for _, name := range out.owned {
		checked[name] = true
	}
	for _, d := range dirs {
		if d.named == "" {
			continue
		}
		for _, b := range d.bases {
			name := d.dir + "/" + b
			if checked[name] {
				continue
			}
			if others := state.Owners(b); len(others) > 0 {
				out.owned = append(out.owned, name)
				out.problems = append(out.problems, problem{name, fmt.Sprintf(
					"not checked: a state file of provider %s, but the store's %s names provider %s, so no run reads it",
					strings.Join(others, " and "), state.MetaObject, d.named)})
			}
		}
	}
	return out, nil
}

// verifyObject checks one object fully: a cairn frame, to its end.
func verifyObject(ctx context.Context, s storage.Storage, name string) error {
	head, err := peekObject(ctx, s, name)
	if err != nil {
		return err
	}
	if !knownKind(head.kind) {
		return fmt.Errorf("a cairn object of an %s, which this build of cairn does not know (written by a newer cairn? upgrade cairn)", head.kind)
	}
	r, err := frame.Get(ctx, s, name, head.kind, max(head.version, 1))
	if err != nil {
		return err
	}
	defer r.Close()
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	return nil
}

// checkStore opens a store the way a restart would and loads its latest
// version. It returns the latest version (-1 when unknown) and what went
// wrong, or "".
func checkStore(ctx context.Context, s storage.Storage, st storeRef) (int64, string) {
	meta, err := state.ReadMeta(ctx, s, st.id)
	if err != nil {
		return -1, "cannot read its metadata: " + err.Error()
	}
	p, err := state.Open(ctx, meta.Provider, s, st.id, meta.Schema, state.Options{MaintenanceInterval: -1})
	if err != nil {
		return -1, "cannot be opened: " + err.Error()
	}
	defer p.Close()
	latest, err := p.LatestVersion(ctx)
	if err != nil {
		return -1, "cannot tell its latest version: " + err.Error()
	}
	rs, err := p.GetReadStore(ctx, latest)
	if err != nil {
		return latest, fmt.Sprintf("latest version %d cannot be loaded: %v", latest, err)
	}
	defer rs.Abort()
	for _, err := range rs.Range(nil, nil) {
		if err != nil {
			return latest, fmt.Sprintf("latest version %d cannot be read: %v", latest, err)
		}
	}
	return latest, ""
}

// checkQuery checks the streaming query of a location, if the listing has
// its metadata object: that the metadata decodes; that the offsets and
// commits logs open (contiguous IDs) and each entry decodes as its kind;
// that consecutive offsets entries follow each other and the watermark
// never goes back; that commits never run ahead of offsets nor miss a
// batch below the last commit; that at most one batch is pending; and
// that every stateful operator has a store per partition holding the
// version the last committed batch left. Objects in bad were reported
// already and are not read again. latest holds the latest version of the
// stores that could be opened.
func checkQuery(ctx context.Context, s storage.Storage, objs []storage.ObjectInfo, bad map[string]bool, latest map[string]int64) (bool, []problem) {
	var out []problem
	add := func(object, format string, a ...any) { out = append(out, problem{object, fmt.Sprintf(format, a...)}) }
	hasMeta := hasObject(objs, stream.MetadataObject)
	if !hasMeta {
		// Offsets or commits without metadata: a query whose metadata
		// (its ID and pinned settings) was lost.
		if !hasPrefix(objs, stream.OffsetsLog+"/") && !hasPrefix(objs, stream.CommitsLog+"/") {
			return false, nil
		}
		add(stream.MetadataObject, "missing: the location holds a streaming query's %s and %s logs but not its %s object (query ID and pinned settings), without which no restart can resume the query: restore the object from a backup, or start the query on a new checkpoint location",
			stream.OffsetsLog, stream.CommitsLog, stream.MetadataObject)
	}
	var meta *stream.Metadata
	if hasMeta && !bad[stream.MetadataObject] {
		m, err := stream.ReadMetadata(ctx, s)
		if err != nil {
			add(stream.MetadataObject, "%s", describeObjectErr(stream.MetadataObject, err))
		} else {
			meta = &m
		}
	}

	q := openQueryLogs(ctx, s)
	for _, l := range []struct {
		name string
		err  error
	}{{stream.OffsetsLog, q.offsetsErr}, {stream.CommitsLog, q.commitsErr}} {
		var ge *metalog.GapError
		switch {
		case l.err == nil:
		case errors.As(l.err, &ge) && len(ge.Missing) > 0:
			add(fmt.Sprintf("%s/%d", l.name, ge.Missing[0]), "missing: %s", strings.TrimPrefix(ge.Error(), "metalog: "))
		default:
			add(l.name+"/", "%s", strings.TrimPrefix(l.err.Error(), "metalog: "))
		}
	}
	if q.offsets != nil && q.hasOff {
		first, _ := q.offsets.Earliest()
		var prev *stream.OffsetsEntry
		for id := first; id <= q.lastOff && ctx.Err() == nil; id++ {
			name := q.offsets.Object(id)
			if bad[name] {
				prev = nil
				continue
			}
			e, err := stream.ReadOffsetsEntry(ctx, q.offsets, id)
			if err != nil {
				add(name, "%s", describeObjectErr(name, err))
				prev = nil
				continue
			}
			if prev != nil && !slices.Equal(prev.End, e.Start) {
				add(name, "batch %d starts at source offsets %v, but batch %d ended at %v: each batch must start where the one before ended", id, e.Start, id-1, prev.End)
			}
			prev = e
		}
	}
	if q.commits != nil && q.hasCommit {
		first, _ := q.commits.Earliest()
		var prev *stream.CommitEntry
		for id := first; id <= q.lastCommit && ctx.Err() == nil; id++ {
			name := q.commits.Object(id)
			if bad[name] {
				prev = nil
				continue
			}
			c, err := stream.ReadCommitEntry(ctx, q.commits, id)
			if err != nil {
				add(name, "%s", describeObjectErr(name, err))
				prev = nil
				continue
			}
			if prev != nil && c.NextWatermark < prev.NextWatermark {
				add(name, "next watermark %d ms is before batch %d's %d ms: the watermark never goes back", c.NextWatermark, id-1, prev.NextWatermark)
			}
			prev = c
		}
	}
	if err := ctx.Err(); err != nil {
		return true, out
	}

	if q.offsets != nil && q.commits != nil {
		offFirst, _ := q.offsets.Earliest()
		comFirst, _ := q.commits.Earliest()
		switch {
		case q.hasCommit && !q.hasOff:
			add(q.commits.Object(q.lastCommit), "batch %d is committed but the offsets log is empty: commits never run ahead of offsets, so offsets entries were lost", q.lastCommit)
		case q.hasCommit && q.lastCommit > q.lastOff:
			add(q.commits.Object(q.lastCommit), "batch %d is committed but the offsets log ends at batch %d: commits never run ahead of offsets, so offsets entries were lost", q.lastCommit, q.lastOff)
		case q.hasCommit && comFirst > offFirst:
			add(q.commits.Object(offFirst), "missing: batch %d has an offsets entry and batches up to %d are committed, but the commits log starts at batch %d: commit entries were deleted outside cairn (cairn purges offsets first, then commits)",
				offFirst, q.lastCommit, comFirst)
		}
		if p, ok := q.pending(); ok && (q.hasCommit && p > q.lastCommit+1 || !q.hasCommit && p > 0) {
			committed := "none is committed"
			if q.hasCommit {
				committed = fmt.Sprintf("commits end at batch %d", q.lastCommit)
			}
			add(q.offsets.Object(p), "offsets run to batch %d but %s: more than one batch is pending, which one writer never leaves; a restart refuses the location", p, committed)
		}
	}

	if meta != nil && q.commits != nil && q.hasCommit && q.offsets != nil && q.hasOff && q.lastCommit <= q.lastOff {
		want := q.lastCommit + 1 // the version the last committed batch left
		for _, op := range meta.Pinned.Operators {
			if !op.Stateful() {
				continue
			}
			for p := range meta.Pinned.Partitions {
				dir := state.StoreID{Operator: op.ID, Partition: int32(p)}.Dir()
				if !hasPrefix(objs, dir+"/") {
					add("state store "+dir, "missing: batch %d is committed, so operator %d (%s) must have a state store for partition %d", q.lastCommit, op.ID, op.Kind, p)
				} else if v, ok := latest[dir]; ok && v < want {
					add("state store "+dir, "latest version is %d, but batch %d is committed, which left version %d: state versions were lost", v, q.lastCommit, want)
				}
			}
		}
	}
	return true, out
}

// hasPrefix reports whether an object of the sorted listing starts with
// prefix.
func hasPrefix(objs []storage.ObjectInfo, prefix string) bool {
	i, _ := slices.BinarySearchFunc(objs, prefix, func(o storage.ObjectInfo, p string) int { return strings.Compare(o.Name, p) })
	return i < len(objs) && strings.HasPrefix(objs[i].Name, prefix)
}

// sinkObject names an object of the file sink in a problem line.
func sinkObject(name string) string { return "sink " + name }

// checkSink checks the file sink at loc: its owner records decode, every
// manifest of every namespace that readers read decodes, and every part it
// lists has the size and CRC32C the manifest records. When the checkpoint
// location ckpt holds a query writing to a file sink, it matches the sink
// to that query: the sink's owners must include the query; every batch of
// its commits log must have a manifest in the query's namespace; and no
// manifest there may be unaccounted for by a commit entry (a batch above
// the last commit without an offsets entry) or written by another
// query. It returns an error only when the sink cannot be read at all.
func checkSink(ctx context.Context, rep *verifyReport, loc string, ckpt storage.Storage) error {
	st, err := openSink(ctx, loc)
	if err != nil {
		return err
	}
	defer st.Close()
	sr := &sinkReport{}
	rep.sink = sr
	add := func(object, what string) { rep.problems = append(rep.problems, problem{sinkObject(object), what}) }
	owners, err := stream.ReadFileSinkOwners(ctx, st)
	if err != nil {
		var ce *storage.CorruptError
		object := stream.FileSinkOwners + "/"
		if errors.As(err, &ce) {
			object = ce.Object
		}
		add(object, describeObjectErr(object, err)+"; the sink's owners cannot be told, so only its root namespace was checked")
		owners = nil
	}
	// The namespaces readers read, with the manifests each holds.
	type namespace struct {
		owner     stream.FileSinkOwner
		have      []int64 // batches with a manifest, sorted
		manifests map[int64]stream.FileSinkManifest
	}
	var spaces []namespace
	for _, o := range stream.FileSinkNamespaces(owners) {
		dir := o.Prefix() + stream.FileSinkManifests + "/"
		objs, err := st.List(ctx, dir)
		if err != nil {
			return fmt.Errorf("list the manifests of file sink %s: %w", loc, err)
		}
		ns := namespace{owner: o, manifests: map[int64]stream.FileSinkManifest{}}
		for _, obj := range objs {
			rest := strings.TrimPrefix(obj.Name, dir)
			id, err := strconv.ParseInt(rest, 10, 64)
			if err != nil || id < 0 || strconv.FormatInt(id, 10) != rest {
				add(obj.Name, "not a manifest: names under "+dir+" are batch IDs")
				continue
			}
			ns.have = append(ns.have, id)
			sr.manifests++
			m, err := stream.ReadFileSinkOwnerManifest(ctx, st, o, id)
			if err != nil {
				add(obj.Name, describeObjectErr(obj.Name, err))
				continue
			}
			ns.manifests[id] = m
			if m.QueryID != "" && o.Recorded() && m.QueryID != o.QueryID {
				add(obj.Name, fmt.Sprintf("written by query %s, but this namespace of the sink is %s's: readers read it as that query's output, which no commit entry of its accounts for", m.QueryID, o.QueryID))
			}
			for _, f := range m.Files {
				sr.parts++
				sr.bytes += f.Bytes
				if _, err := stream.ReadFileSinkPart(ctx, st, f); err != nil {
					add(f.Name, describeObjectErr(f.Name, err))
				}
				if err := ctx.Err(); err != nil {
					return err
				}
			}
		}
		slices.Sort(ns.have)
		spaces = append(spaces, ns)
	}

	meta, err := stream.ReadMetadata(ctx, ckpt)
	if err != nil || !strings.HasPrefix(meta.Pinned.Sink, "files:") {
		return nil // not a query writing to a file sink: nothing to match
	}
	sinkName := strings.TrimPrefix(meta.Pinned.Sink, "files:")
	// The query's namespace: its owner record, or the root of a sink
	// without owner records.
	var mine *namespace
	var others []string
	for i := range spaces {
		o := spaces[i].owner
		switch {
		case o.Recorded() && o.QueryID == meta.QueryID:
			mine = &spaces[i]
		case o.Recorded():
			others = append(others, fmt.Sprintf("%s (query %s, checkpoint %s)", stream.FileSinkOwnerObject(o.Generation), o.QueryID, o.Checkpoint))
		}
	}
	if mine == nil && len(others) > 0 {
		replaced := ""
		for _, o := range owners {
			if o.QueryID == meta.QueryID {
				replaced = fmt.Sprintf("; this query wrote generation %d, which a later query replaced", o.Generation)
			}
		}
		add(stream.FileSinkOwners+"/", fmt.Sprintf("the sink is written by %s, not by this checkpoint's query %s%s: a restart of this query is refused; is --sink the query's sink (%s)?",
			strings.Join(others, " and "), meta.QueryID, replaced, sinkName))
		return nil
	}
	if mine == nil {
		if len(spaces) == 0 {
			return nil
		}
		mine = &spaces[0] // a sink without owner records: its root
	}
	q := openQueryLogs(ctx, ckpt)
	if q.offsets == nil || q.commits == nil {
		return nil // reported with the query
	}
	prefix := mine.owner.Prefix()
	if q.hasCommit && q.hasOff {
		first, _ := q.commits.Earliest()
		first = max(first, mine.owner.FirstBatch)
		last := min(q.lastCommit, q.lastOff) // a commit past the offsets log is reported with the query
		var missing []int64
		for b := first; b <= last; b++ {
			if _, ok := slices.BinarySearch(mine.have, b); !ok {
				missing = append(missing, b)
			}
		}
		if len(missing) > 0 {
			what := fmt.Sprintf("missing: batch %d is committed, so its output is in the sink, but the sink has no manifest for it", missing[0])
			if len(missing) > 1 {
				what += fmt.Sprintf(" (nor for %d more committed batches, up to %d)", len(missing)-1, missing[len(missing)-1])
			}
			add(prefix+stream.FileSinkManifestObject(missing[0]), what+"; is --sink the query's sink ("+sinkName+")?")
		}
	}
	for _, b := range mine.have {
		m, ok := mine.manifests[b]
		name := prefix + stream.FileSinkManifestObject(b)
		switch {
		case !ok: // damaged: reported above
		case m.QueryID != "" && m.QueryID != meta.QueryID && !mine.owner.Recorded():
			add(name, fmt.Sprintf("written by query %s, not by this checkpoint's query %s: no commit entry accounts for it, yet readers read it as output", m.QueryID, meta.QueryID))
		case q.hasCommit && b <= q.lastCommit, q.hasOff && b <= q.lastOff && (!q.hasCommit || b > q.lastCommit):
			// committed, or written ahead: a restart replays it with its range
		default:
			last := "no batch is committed"
			if q.hasCommit {
				last = fmt.Sprintf("the last committed batch is %d", q.lastCommit)
			}
			add(name, fmt.Sprintf("no commit entry accounts for batch %d (%s, and it has no offsets entry), yet readers read it as output: it was written by another query, or before this checkpoint location was restored from an older copy", b, last))
		}
	}
	return nil
}
