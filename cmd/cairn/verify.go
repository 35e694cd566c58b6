package main

import (
	"context"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/state/memstate"
	"github.com/cairn-data/cairn/storage"
)

func verifyCommand() *command {
	return &command{
		name:    "checkpoint verify",
		args:    "DIR",
		nargs:   1,
		argHelp: locationArgHelp,
		summary: "check every byte of a checkpoint location; exit 1 if anything is damaged",
		doc: `
Reads every object of the checkpoint location DIR and checks it fully:

  - its frame: magic, known kind, format version, every chunk checksum, the
    end block, and nothing after it;
  - for state deltas and snapshots, every record: syntax, lengths, key order;
  - for each state store (a directory with a _meta object), that its latest
    version loads.

Prints one line per problem, "OBJECT: what is wrong", then a summary line
"checked N objects, X bytes, S state stores: M problems". A file that cairn
did not write (no cairn header) is a problem too.

DIR is a directory path or a storage URL. Nothing is written to it.
Exit status: 0 when the location is sound, 1 when a problem was found or
the location could not be read, 2 for a wrong command line.`,
		example: `
cairn demo --dir /tmp/cairn-demo
cairn checkpoint verify /tmp/cairn-demo/checkpoint`,
		run: func(ctx context.Context, c *cli, inv *invocation) error {
			return runVerify(ctx, c, inv.args[0])
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
	problems []problem
}

func runVerify(ctx context.Context, c *cli, loc string) error {
	s, err := openLocation(ctx, loc)
	if err != nil {
		return err
	}
	defer s.Close()
	rep, err := verifyLocation(ctx, s)
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
	return fmt.Sprintf("checked %s, %s, %s: %s", plural(r.objects, "object"), plural64(r.bytes, "byte"),
		plural(r.stores, "state store"), plural(len(r.problems), "problem"))
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
// in listing order of the objects, then the stores.
func verifyLocation(ctx context.Context, s storage.Storage) (*verifyReport, error) {
	objs, err := s.List(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("list checkpoint location %s: %w", s.Location(), err)
	}
	rep := &verifyReport{objects: len(objs)}
	for _, o := range objs {
		rep.bytes += o.Size
	}

	found := make([]string, len(objs)) // what is wrong with objs[i], "" when nothing
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(verifyWorkers, len(objs)) {
		wg.Go(func() {
			for i := range next {
				if err := verifyObject(ctx, s, objs[i].Name); err != nil {
					found[i] = describeErr(objs[i].Name, err)
				}
			}
		})
	}
	for i := range objs {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	bad := map[string]bool{}
	for i, what := range found {
		if what != "" {
			rep.problems = append(rep.problems, problem{objs[i].Name, what})
			bad[objs[i].Name] = true
		}
	}

	stores, misplaced := findStores(objs)
	for _, name := range misplaced {
		rep.problems = append(rep.problems, problem{name, "store metadata outside a store directory (state/<operator>/<partition>[/<name>]): no store uses it"})
	}
	rep.stores = len(stores)
	dirs := map[string]bool{}
	for _, st := range stores {
		dirs[st.dir] = true
	}
	// State files whose directory has no _meta: the metadata was lost.
	orphans := map[string]bool{}
	for _, o := range objs {
		dir, base := path.Dir(o.Name), path.Base(o.Name)
		if _, _, ok := memstate.ParseFileName(base); ok && strings.HasPrefix(dir, "state/") && !dirs[dir] && !orphans[dir] {
			orphans[dir] = true
			rep.problems = append(rep.problems, problem{dir, "holds state files but no " + state.MetaObject + " object: the store's metadata is missing, so no run can open it"})
		}
	}
	for _, st := range stores {
		if bad[st.dir+"/"+state.MetaObject] {
			continue // reported above; the store cannot be opened
		}
		if what := checkStore(ctx, s, st); what != "" {
			rep.problems = append(rep.problems, problem{"state store " + st.dir, what})
		}
	}
	return rep, nil
}

// verifyObject checks one object fully.
func verifyObject(ctx context.Context, s storage.Storage, name string) error {
	head, err := peekObject(ctx, s, name)
	if err != nil {
		return err
	}
	if !knownKind(head.kind) {
		return fmt.Errorf("a cairn object of an %s, which this build of cairn does not know (written by a newer cairn? upgrade cairn)", head.kind)
	}
	if _, _, ok := memstate.ParseFileName(path.Base(name)); ok && strings.HasPrefix(name, "state/") {
		return memstate.VerifyObject(ctx, s, name)
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
// version. It returns what went wrong, or "".
func checkStore(ctx context.Context, s storage.Storage, st storeRef) string {
	meta, err := state.ReadMeta(ctx, s, st.id)
	if err != nil {
		return "cannot read its metadata: " + err.Error()
	}
	p, err := state.Open(ctx, meta.Provider, s, st.id, meta.Schema, state.Options{MaintenanceInterval: -1})
	if err != nil {
		return "cannot be opened: " + err.Error()
	}
	defer p.Close()
	latest, err := p.LatestVersion(ctx)
	if err != nil {
		return "cannot tell its latest version: " + err.Error()
	}
	rs, err := p.GetReadStore(ctx, latest)
	if err != nil {
		return fmt.Sprintf("latest version %d cannot be loaded: %v", latest, err)
	}
	defer rs.Abort()
	for _, err := range rs.Range(nil, nil) {
		if err != nil {
			return fmt.Sprintf("latest version %d cannot be read: %v", latest, err)
		}
	}
	return ""
}
