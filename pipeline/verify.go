package pipeline

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"
	"sync"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/storage"
)

// Problem is one thing wrong with the objects of a pipeline's checkpoint
// location, as Verify finds it.
type Problem struct {
	// Object is the object that is wrong, or missing, by its full name in
	// the location.
	Object string
	// Err says what is wrong. Damage is a *storage.CorruptError naming
	// Object; a missing object matches storage.ErrNotFound.
	Err error
}

func (p Problem) Error() string { return p.Object + ": " + p.Err.Error() }

func (p Problem) Unwrap() error { return p.Err }

// Check is what Verify found in a pipeline's checkpoint location.
type Check struct {
	// Stages counts the stage output directories, Parts the parts
	// checked against a completion record or a stage manifest.
	Stages, Parts int
	// Owned lists the objects Verify read and checked, sound or not, in
	// name order: stage manifests, completion records and parts. The
	// location's other objects are framed records that a frame check
	// covers.
	Owned []string
	// Problems lists what is wrong, in name order of the objects.
	Problems []Problem
	// Bytes is how many bytes Verify read.
	Bytes int64
}

// verifyConcurrency bounds the parts Verify reads at once.
const verifyConcurrency = 8

// Verify checks every stage output under runs/ of a pipeline's checkpoint
// location st, as a run that restores it would read it:
//
//   - every completion record (part-NNNNN.done) decodes, and the part it
//     names exists with the bytes, CRC32C and, for Parquet, the rows it
//     records;
//   - every stage manifest (_manifest) decodes, agrees with the
//     completion records of its partitions, and the parts it lists are
//     sound as above;
//   - a part no record names (an attempt that did not complete its
//     partition, deleted when the stage completes) is a whole Parquet
//     file or a sound frame.
//
// It returns an error only when st cannot be listed or ctx ends; a
// location with no runs gives an empty Check. Nothing is written.
func Verify(ctx context.Context, st storage.Storage) (Check, error) {
	objs, err := st.List(ctx, runsPrefix)
	if err != nil {
		return Check{}, fmt.Errorf("pipeline: list runs in %s: %w", st.Location(), err)
	}
	var c Check
	type part struct {
		name string
		info *dataset.PartInfo // nil: no record names it
		by   string            // the record that names it
	}
	var parts []part
	byName := map[string]int{} // part -> index in parts
	have := map[string]int64{}
	for _, o := range objs {
		have[o.Name] = o.Size
	}
	dirs := map[string][]storage.ObjectInfo{} // stage directory -> its objects
	var order []string
	for _, o := range objs {
		dir, ok := stageDirOf(o.Name)
		if !ok {
			continue
		}
		if _, seen := dirs[dir]; !seen {
			order = append(order, dir)
		}
		dirs[dir] = append(dirs[dir], o)
	}
	c.Stages = len(order)
	addPart := func(name string, info *dataset.PartInfo, by string) {
		if i, ok := byName[name]; ok {
			if parts[i].info == nil {
				parts[i].info, parts[i].by = info, by
			}
			return
		}
		byName[name] = len(parts)
		parts = append(parts, part{name, info, by})
	}
	for _, dir := range order {
		done := map[int]dataset.PartDone{}
		for _, o := range dirs[dir] {
			base := path.Base(o.Name)
			p, isDone := dataset.ParseDoneName(base)
			switch {
			case isDone:
				c.Owned = append(c.Owned, o.Name)
				c.Bytes += o.Size
				pd, err := dataset.ReadPartDone(ctx, st, dir, p)
				if err != nil {
					c.Problems = append(c.Problems, Problem{o.Name, err})
					continue
				}
				done[p] = pd
				info := pd.PartInfo
				addPart(dir+"/"+pd.File, &info, o.Name)
			case dataset.IsPartName(base):
				c.Owned = append(c.Owned, o.Name)
				addPart(o.Name, nil, "")
			}
		}
		if _, ok := have[dir+"/"+dataset.ManifestObject]; ok {
			name := dir + "/" + dataset.ManifestObject
			c.Owned = append(c.Owned, name)
			c.Bytes += have[name]
			m, err := dataset.ReadManifest(ctx, st, dir)
			if err != nil {
				c.Problems = append(c.Problems, Problem{name, err})
				continue
			}
			for p, info := range m.Partitions {
				if pd, ok := done[p]; ok && pd.PartInfo != info {
					c.Problems = append(c.Problems, Problem{name, &storage.CorruptError{Object: name, Offset: -1,
						Reason: fmt.Sprintf("it lists partition %d as %s, and part-%05d.done records %s", p, partString(info), p, partString(pd.PartInfo))}})
					continue
				}
				addPart(dir+"/"+info.File, &info, name)
			}
		}
		if err := ctx.Err(); err != nil {
			return Check{}, err
		}
	}

	found := make([]error, len(parts))
	var wg sync.WaitGroup
	next := make(chan int)
	for range min(verifyConcurrency, len(parts)) {
		wg.Go(func() {
			for i := range next {
				p := parts[i]
				if _, ok := have[p.name]; !ok {
					found[i] = fmt.Errorf("missing (%w): %s records it complete (%d rows, %d bytes), so a run that restores this stage fails", storage.ErrNotFound, p.by, p.info.Records, p.info.Bytes)
					continue
				}
				found[i] = dataset.VerifyPart(ctx, st, p.name, p.info)
			}
		})
	}
	for i := range parts {
		next <- i
	}
	close(next)
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Check{}, err
	}
	for i, p := range parts {
		c.Bytes += have[p.name]
		if p.info != nil {
			c.Parts++
		}
		if err := found[i]; err != nil {
			if stage, run := stageOfDir(path.Dir(p.name)); stage != "" && p.info != nil {
				err = fmt.Errorf("%w; to compute the stage again, drop its output ('cairn pipeline drop-stage LOCATION %s' when run %s is the latest)", err, stage, run)
			}
			c.Problems = append(c.Problems, Problem{p.name, err})
		}
	}
	slices.Sort(c.Owned)
	c.Owned = slices.Compact(c.Owned)
	slices.SortStableFunc(c.Problems, func(a, b Problem) int { return strings.Compare(a.Object, b.Object) })
	return c, nil
}

func partString(p dataset.PartInfo) string {
	return fmt.Sprintf("%s (%d rows, %d bytes, CRC32C %08x)", p.File, p.Records, p.Bytes, p.CRC32C)
}

// stageDirOf returns the stage directory runs/<run>/stages/<stage>/<fp>
// that holds object directly.
func stageDirOf(object string) (string, bool) {
	parts := strings.Split(object, "/")
	if len(parts) != 6 || parts[0]+"/" != runsPrefix || parts[2] != "stages" {
		return "", false
	}
	return strings.Join(parts[:5], "/"), true
}

// stageOfDir returns the stage and run of a stage directory.
func stageOfDir(dir string) (stage, run string) {
	parts := strings.Split(dir, "/")
	if len(parts) != 5 {
		return "", ""
	}
	return parts[3], parts[1]
}
