package stream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/storage"
)

// This file holds what a file sink knows of the queries that write it:
// its owner records, the namespaces they write, the checks a query's
// start makes (a second query, committed output gone), and the canonical
// form of the sink's location.

// Objects of a file sink's owner records.
const (
	// FileSinkOwners is the prefix of a file sink's owner records:
	// _sink/<generation>, one per query that took the sink.
	FileSinkOwners = "_sink"
	// fileSinkOwnerVersion is the format version of an owner record
	// (frame.KindQueryMeta with a JSON payload).
	fileSinkOwnerVersion = 1
	// fileSinkOwnerRecord is the "record" field of every owner record: a
	// query's metadata object copied over one is refused.
	fileSinkOwnerRecord = "cairn file sink owner"
)

// Values of FileSinkOptions.IfOwned.
const (
	// SinkReplace: a query that finds the sink written by other queries
	// takes it over; their output is no longer read, and removed.
	SinkReplace = "replace"
	// SinkAppend: a query that finds the sink written by other queries
	// writes beside them, in a namespace of its own; readers read all.
	SinkAppend = "append"
)

// Modes of an owner record: how the query took the sink.
const (
	ownerNew     = "new"     // the first query of an empty sink
	ownerAdopt   = "adopt"   // a query that wrote the sink before owners were recorded
	ownerReplace = "replace" // FileSinkOptions.IfOwned "replace"
	ownerAppend  = "append"  // FileSinkOptions.IfOwned "append"
)

var (
	// ErrSinkOwned matches the error of a query that starts over a file
	// sink that another query writes, without FileSinkOptions.IfOwned.
	ErrSinkOwned = errors.New("stream: the file sink is written by another query")
	// ErrSinkOutputMissing matches the error of a restart that finds the
	// manifests of committed batches missing from its file sink.
	ErrSinkOutputMissing = errors.New("stream: committed output is missing from the file sink")
)

// FileSinkOwner is the record of a query that writes a file sink:
// _sink/<generation>, a framed object (frame.KindQueryMeta, version 1)
// with a JSON payload, created if absent when the query first starts over
// the sink. A query writes the batches of its generation under Prefix().
type FileSinkOwner struct {
	Record     string `json:"record"` // "cairn file sink owner"
	Generation int    `json:"generation"`
	// QueryID and Checkpoint are the owner's query ID and checkpoint
	// location. Both are "" for the root namespace of a sink written
	// before cairn recorded owners (no record).
	QueryID    string `json:"query_id"`
	Checkpoint string `json:"checkpoint"`
	// Mode is how the query took the sink: "new" (an empty sink), "adopt"
	// (its own output, written before owners were recorded), "replace" or
	// "append" (FileSinkOptions.IfOwned).
	Mode string `json:"mode"`
	// FirstBatch is the query's first batch in this generation: the
	// batches from it up to the query's last commit must have manifests.
	FirstBatch int64     `json:"first_batch"`
	Created    time.Time `json:"created"`
}

// Recorded reports whether the owner has a record (false only for the
// root namespace of a sink written before owners were recorded).
func (o FileSinkOwner) Recorded() bool { return o.Record != "" }

// Prefix is where the generation's parts and manifests live: "" (the
// sink's root) for generation 0, "owner-<generation>/" after.
func (o FileSinkOwner) Prefix() string { return fileSinkPrefix(o.Generation) }

func (o FileSinkOwner) String() string {
	if !o.Recorded() {
		return "a query that did not record itself (a cairn without owner records wrote it)"
	}
	return fmt.Sprintf("query %s (checkpoint %s)", o.QueryID, o.Checkpoint)
}

func fileSinkPrefix(generation int) string {
	if generation == 0 {
		return ""
	}
	return "owner-" + strconv.Itoa(generation) + "/"
}

// FileSinkOwnerObject returns the name of a generation's owner record.
func FileSinkOwnerObject(generation int) string {
	return FileSinkOwners + "/" + strconv.Itoa(generation)
}

// ReadFileSinkOwners returns the owner records of the file sink in st, in
// generation order: none for a sink written before cairn recorded owners,
// or never written by a query. A damaged record is an error wrapping the
// *storage.CorruptError that names it.
func ReadFileSinkOwners(ctx context.Context, st storage.Storage) ([]FileSinkOwner, error) {
	objs, err := st.List(ctx, FileSinkOwners+"/")
	if err != nil {
		return nil, fmt.Errorf("stream: list the owner records of file sink %s: %w", st.Location(), err)
	}
	var gens []int
	for _, o := range objs {
		rest := strings.TrimPrefix(o.Name, FileSinkOwners+"/")
		g, err := strconv.Atoi(rest)
		if err != nil || g < 0 || strconv.Itoa(g) != rest {
			return nil, fmt.Errorf("stream: file sink %s: %s is not an owner record (names under %s/ are generations)", st.Location(), o.Name, FileSinkOwners)
		}
		gens = append(gens, g)
	}
	slices.Sort(gens)
	out := make([]FileSinkOwner, 0, len(gens))
	for _, g := range gens {
		o, err := readFileSinkOwner(ctx, st, g)
		if err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, nil
}

func readFileSinkOwner(ctx context.Context, st storage.Storage, g int) (FileSinkOwner, error) {
	name := FileSinkOwnerObject(g)
	payload, _, err := frame.GetBytes(ctx, st, name, frame.KindQueryMeta, fileSinkOwnerVersion)
	if err != nil {
		return FileSinkOwner{}, fmt.Errorf("stream: read file sink owner record %s: %w", name, err)
	}
	var o FileSinkOwner
	switch err := json.Unmarshal(payload, &o); {
	case err != nil, o.Record != fileSinkOwnerRecord:
		return FileSinkOwner{}, &storage.CorruptError{Object: name, Offset: -1, Reason: "not a file sink owner record"}
	case o.Generation != g:
		return FileSinkOwner{}, &storage.CorruptError{Object: name, Offset: -1, Reason: fmt.Sprintf("the owner record of generation %d, not %d", o.Generation, g)}
	case o.QueryID == "" || o.FirstBatch < 0:
		return FileSinkOwner{}, &storage.CorruptError{Object: name, Offset: -1, Reason: "an owner record without a query ID or with a negative first batch"}
	}
	return o, nil
}

// FileSinkNamespaces returns the namespaces that readers of a sink with
// these owner records read, in read order: from the last "replace" on,
// each generation; without one, the root (generation 0, recorded or not)
// and every later generation. An unrecorded root is a FileSinkOwner with
// only its generation.
func FileSinkNamespaces(owners []FileSinkOwner) []FileSinkOwner {
	from := 0
	for i, o := range owners {
		if o.Mode == ownerReplace {
			from = i
		}
	}
	if from > 0 || len(owners) > 0 && owners[0].Mode == ownerReplace {
		return slices.Clone(owners[from:])
	}
	if len(owners) == 0 || owners[0].Generation != 0 {
		return append([]FileSinkOwner{{}}, owners...)
	}
	return slices.Clone(owners)
}

// fileSinkBatches lists the batch IDs of a namespace's manifests, sorted.
func fileSinkBatches(ctx context.Context, st storage.Storage, prefix string) ([]int64, error) {
	dir := prefix + FileSinkManifests + "/"
	objs, err := st.List(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("stream: list the manifests of file sink %s: %w", st.Location(), err)
	}
	ids := make([]int64, 0, len(objs))
	for _, o := range objs {
		rest := strings.TrimPrefix(o.Name, dir)
		id, err := strconv.ParseInt(rest, 10, 64)
		if err != nil || id < 0 || strconv.FormatInt(id, 10) != rest {
			return nil, fmt.Errorf("stream: file sink %s: %s is not a manifest (names under %s are batch IDs)", st.Location(), o.Name, dir)
		}
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids, nil
}

// FileSinkMissing returns the batches from first up to the greatest of
// have (sorted) that have no manifest: the gaps a reader notices.
func FileSinkMissing(first int64, have []int64) []int64 {
	var out []int64
	next := first
	for _, b := range have {
		for ; next < b; next++ {
			out = append(out, next)
		}
		next = max(next, b+1)
	}
	return out
}

// missingCommitted returns the batches first..last that have no manifest.
func missingCommitted(first, last int64, have []int64) []int64 {
	var out []int64
	for b := first; b <= last; b++ {
		if _, ok := slices.BinarySearch(have, b); !ok {
			out = append(out, b)
		}
	}
	return out
}

// BatchRanges says which batches there are, briefly: "3", "3 to 5",
// "1, 3 to 5, 9", with "... (N batches)" past ten runs.
func BatchRanges(ids []int64) string {
	var parts []string
	for i := 0; i < len(ids); {
		j := i
		for j+1 < len(ids) && ids[j+1] == ids[j]+1 {
			j++
		}
		if j == i {
			parts = append(parts, strconv.FormatInt(ids[i], 10))
		} else {
			parts = append(parts, fmt.Sprintf("%d to %d", ids[i], ids[j]))
		}
		i = j + 1
		if len(parts) == 10 && i < len(ids) {
			parts = append(parts, fmt.Sprintf("... (%d batches in all)", len(ids)))
			break
		}
	}
	return strings.Join(parts, ", ")
}

// AttachQuery implements QueryAttacher; a query calls it at Start, after
// reading its logs. It finds or makes the query's owner record:
//
//   - a query that owns the sink (its record is read by readers) checks
//     that its committed batches have their manifests;
//   - the first query of an empty sink records itself (generation 0);
//   - a query whose committed output is the root of a sink written before
//     owners were recorded adopts it, once its manifests are all there;
//   - a query that finds the sink written by another query is refused
//     (an error matching ErrSinkOwned) unless FileSinkOptions.IfOwned says
//     to replace or append, and then records itself in a new generation.
//
// A restart whose committed batches have no manifest is refused with an
// error matching ErrSinkOutputMissing that names them. After a replace,
// it removes the output of the replaced generations (again at each start
// of the owner until none is left).
func (s *FileSink[T]) AttachQuery(ctx context.Context, q QueryInfo) error {
	for range 3 { // a create that loses a race with another query's start is read again
		err := s.attach(ctx, q)
		if !errors.Is(err, storage.ErrExists) {
			return err
		}
	}
	return fmt.Errorf("stream: file sink %s: other queries keep taking the sink while this one starts; start one query at a time", s.canon)
}

func (s *FileSink[T]) attach(ctx context.Context, q QueryInfo) error {
	owners, err := ReadFileSinkOwners(ctx, s.st)
	if err != nil {
		return err
	}
	live := FileSinkNamespaces(owners)
	next := int64(0) // the query's next batch
	if q.HasCommitted {
		next = q.LastCommitted + 1
	}
	// Its own namespace: check that the output of its committed batches is
	// there, and resume the removal of what it replaced.
	for i := len(live) - 1; i >= 0; i-- {
		if o := live[i]; o.Recorded() && o.QueryID == q.ID {
			if err := s.checkCommitted(ctx, q, o); err != nil {
				return err
			}
			if err := s.removeReplaced(ctx, owners, live); err != nil {
				return err
			}
			s.use(o, q.ID)
			return nil
		}
	}
	latest := -1
	if len(owners) > 0 {
		latest = owners[len(owners)-1].Generation
	}
	var root []int64
	if len(live) > 0 && !live[0].Recorded() {
		if root, err = fileSinkBatches(ctx, s.st, ""); err != nil {
			return err
		}
	}
	// An unrecorded root: a query with committed batches whose manifests
	// are all there wrote it, before owners were recorded.
	if len(live) > 0 && !live[0].Recorded() && q.HasCommitted && len(root) > 0 {
		if missing := missingCommitted(0, q.LastCommitted, root); len(missing) == 0 {
			o := s.newOwner(0, q, ownerAdopt, 0)
			if err := s.putOwner(ctx, o); err != nil {
				return err
			}
			s.use(o, q.ID)
			return nil
		}
	}
	// A query with committed batches over an unrecorded root that lacks
	// some of them: most likely its own output, with manifests deleted.
	if len(root) > 0 && q.HasCommitted && s.opts.IfOwned == "" {
		return s.checkCommitted(ctx, q, FileSinkOwner{})
	}
	// Others to replace or append to: recorded owners, or an unrecorded
	// root with output.
	var others []FileSinkOwner
	for _, o := range live {
		if o.Recorded() || len(root) > 0 {
			others = append(others, o)
		}
	}
	if len(others) == 0 {
		// An empty sink: the query is its first writer. A query that
		// committed batches finds its output gone (deleted, or written
		// elsewhere: a relative path pinned by an older cairn).
		o := s.newOwner(0, q, ownerNew, 0)
		if err := s.checkCommitted(ctx, q, o); err != nil {
			return err
		}
		if err := s.putOwner(ctx, o); err != nil {
			return err
		}
		s.use(o, q.ID)
		return nil
	}
	gen := max(latest, 0) + 1
	switch s.opts.IfOwned {
	case SinkAppend:
		o := s.newOwner(gen, q, ownerAppend, next)
		if err := s.putOwner(ctx, o); err != nil {
			return err
		}
		s.use(o, q.ID)
		return nil
	case SinkReplace:
		o := s.newOwner(gen, q, ownerReplace, next)
		if err := s.putOwner(ctx, o); err != nil {
			return err
		}
		owners = append(owners, o)
		if err := s.removeReplaced(ctx, owners, FileSinkNamespaces(owners)); err != nil {
			return err
		}
		s.use(o, q.ID)
		return nil
	}
	names := make([]string, len(others))
	for i, o := range others {
		names[i] = o.String()
	}
	was := ""
	for _, o := range owners {
		if o.QueryID == q.ID {
			was = fmt.Sprintf(" (this query wrote generation %d of it, which a later query replaced)", o.Generation)
		}
	}
	for _, o := range others {
		if o.Checkpoint == q.Checkpoint && o.QueryID != q.ID {
			was += " (the checkpoint location is the same, but its query was started anew: its metadata is not the one that wrote the sink)"
			break
		}
	}
	return fmt.Errorf("%w: file sink %s is written by %s; this query, %s (checkpoint %s), would mix its batches with that output%s. "+
		"Give this query another output location; or set FileSinkOptions.IfOwned to %q to take the sink over (the output there is no longer read, and is removed) "+
		"or to %q to write beside it (readers read both)",
		ErrSinkOwned, s.canon, strings.Join(names, " and "), q.ID, q.Checkpoint, was, SinkReplace, SinkAppend)
}

// checkCommitted refuses a query whose committed batches in namespace o
// have no manifest.
func (s *FileSink[T]) checkCommitted(ctx context.Context, q QueryInfo, o FileSinkOwner) error {
	if !q.HasCommitted || q.LastCommitted < o.FirstBatch {
		return nil
	}
	have, err := fileSinkBatches(ctx, s.st, o.Prefix())
	if err != nil {
		return err
	}
	missing := missingCommitted(o.FirstBatch, q.LastCommitted, have)
	if len(missing) == 0 {
		return nil
	}
	example := o.Prefix() + FileSinkManifestObject(missing[0])
	what := "batch " + BatchRanges(missing) + " has"
	if len(missing) > 1 {
		what = "batches " + BatchRanges(missing) + " have"
	}
	committed := fmt.Sprintf("batches %d to %d", o.FirstBatch, q.LastCommitted)
	if o.FirstBatch == q.LastCommitted {
		committed = fmt.Sprintf("batch %d", o.FirstBatch)
	}
	return fmt.Errorf("%w: query %s (checkpoint %s) committed %s to file sink %s, but %s no manifest (%s): that output is gone, and readers would skip it without a word. "+
		"Restore the sink's manifests and parts from a copy; if the output was moved, give the query its old location; "+
		"or start the query over with a new checkpoint location to reprocess its input",
		ErrSinkOutputMissing, q.ID, q.Checkpoint, committed, s.canon, what, example)
}

func (s *FileSink[T]) newOwner(gen int, q QueryInfo, mode string, first int64) FileSinkOwner {
	return FileSinkOwner{Record: fileSinkOwnerRecord, Generation: gen, QueryID: q.ID, Checkpoint: q.Checkpoint,
		Mode: mode, FirstBatch: first, Created: time.Now().UTC()}
}

// putOwner creates an owner record; one that exists already (another
// query's start won the race) is an error matching storage.ErrExists.
func (s *FileSink[T]) putOwner(ctx context.Context, o FileSinkOwner) error {
	data, _ := json.MarshalIndent(o, "", "  ")
	name := FileSinkOwnerObject(o.Generation)
	if err := frame.PutBytes(ctx, s.st, name, frame.KindQueryMeta, fileSinkOwnerVersion, data, storage.PutOptions{IfAbsent: true}); err != nil {
		return fmt.Errorf("stream: file sink %s: record the owner %s: %w", s.canon, name, err)
	}
	return nil
}

// use makes AddBatch write into o's namespace.
func (s *FileSink[T]) use(o FileSinkOwner, queryID string) {
	s.mu.Lock()
	s.prefix, s.generation, s.queryID = o.Prefix(), o.Generation, queryID
	s.mu.Unlock()
}

// removeReplaced removes the parts and manifests of the generations before
// the last replace (manifests first: a part without one is never read).
// Readers stop reading them as soon as the replace is recorded; this frees
// the space, and resumes at the next start if it is cut short.
func (s *FileSink[T]) removeReplaced(ctx context.Context, owners, live []FileSinkOwner) error {
	if len(live) == 0 || live[0].Mode != ownerReplace {
		return nil
	}
	first := live[0].Generation
	var prefixes []string
	for g := range first {
		if g == 0 {
			prefixes = append(prefixes, FileSinkManifests+"/", "batch-")
		} else {
			prefixes = append(prefixes, fileSinkPrefix(g))
		}
	}
	var manifests, parts []string
	for _, p := range prefixes {
		objs, err := s.st.List(ctx, p)
		if err != nil {
			return fmt.Errorf("stream: file sink %s: list the output of replaced queries: %w", s.canon, err)
		}
		for _, o := range objs {
			if strings.HasPrefix(o.Name, FileSinkManifests+"/") || strings.Contains(o.Name, "/"+FileSinkManifests+"/") {
				manifests = append(manifests, o.Name)
			} else {
				parts = append(parts, o.Name)
			}
		}
	}
	for _, name := range append(manifests, parts...) {
		if err := s.st.Delete(ctx, name); err != nil {
			return fmt.Errorf("stream: file sink %s: remove %s, output of a replaced query (the replace is recorded in %s and readers no longer read it; start again to finish the removal): %w",
				s.canon, name, FileSinkOwnerObject(first), err)
		}
	}
	return nil
}

// ---- Canonical locations ----

// canonicalLocation returns the form of a storage location that names it
// the same way from any working directory: an absolute local path with
// its symbolic links resolved (as far as the path exists), for a path or
// a file:// URL; for other URLs, the scheme and host in lower case, the
// path cleaned, and the query parameters sorted.
func canonicalLocation(loc string) (string, error) {
	scheme, _, hasScheme := strings.Cut(loc, "://")
	if !hasScheme || filepath.VolumeName(loc) != "" {
		return canonicalPath(loc)
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("parse location %q: %w", loc, err)
	}
	if strings.EqualFold(scheme, "file") {
		return canonicalPath(u.Path)
	}
	c := url.URL{Scheme: strings.ToLower(u.Scheme), Host: strings.ToLower(u.Host), RawQuery: u.Query().Encode()}
	if p := path.Clean("/" + u.Path); p != "/" {
		c.Path = p
	}
	return c.String(), nil
}

// canonicalPath makes dir absolute and resolves the symbolic links of its
// longest existing part.
func canonicalPath(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	rest := ""
	for p := abs; ; p = filepath.Dir(p) {
		if _, err := os.Lstat(p); err == nil {
			real, err := filepath.EvalSymlinks(p)
			if err != nil {
				return "", err
			}
			return filepath.Join(real, rest), nil
		}
		if filepath.Dir(p) == p {
			return abs, nil
		}
		rest = filepath.Join(filepath.Base(p), rest)
	}
}
