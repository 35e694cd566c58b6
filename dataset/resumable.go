package dataset

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/parquet-go/parquet-go/compress"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/storage"
)

// A resumable write stores a dataset partition by partition under one
// directory of checkpoint storage, so that a process killed midway and
// started again computes only the partitions that were not complete:
//
//	dir/part-00003-<attempt>.parquet   records of partition 3 (plain Parquet, or framed gob)
//	dir/part-00003.done                completion record: file, records, bytes, CRC32C
//	dir/_manifest                      the checkpoint manifest, written last
//
// A partition is complete exactly when its .done record exists; the record
// is created if absent, after its part is stored, so two writers (two
// attempts, or two workers sharing the directory) never both complete a
// partition: the loser deletes its part and uses the winner's. Part names
// carry the writer's attempt, so writers never overwrite each other's part.
// A directory with a _manifest is a complete checkpoint that OpenCheckpoint
// reads like any other.

// partDoneVersion is the format version of .done records.
const partDoneVersion = 1

// doneSuffix ends the name of a partition's completion record.
const doneSuffix = ".done"

// PartDone is the completion record of one partition of a resumable write.
type PartDone struct {
	PartInfo
	Partition int       `json:"partition"`
	Attempt   string    `json:"attempt"`
	ElapsedNS int64     `json:"elapsed_ns"` // time to compute and store the partition
	Finished  time.Time `json:"finished"`
	// Counters are what ResumableOptions.Counters returned for the
	// partition (a pipeline's dropped-record counts, for example).
	Counters map[string]int64 `json:"counters,omitempty"`
}

// Elapsed is the time the partition took to compute and store.
func (p PartDone) Elapsed() time.Duration { return time.Duration(p.ElapsedNS) }

// ResumableOptions configure WriteResumable.
type ResumableOptions struct {
	// Attempt names this writer; it is part of every part object's name,
	// so it must differ between processes that may write the directory
	// (a random string per process does). Required.
	Attempt string
	// Compression of Parquet parts: "none" (default), "snappy" or "zstd".
	Compression string
	// BeforePartition, if set, runs before partition part is computed. It
	// may return a derived context for the computation (to carry counters)
	// or an error, which stops the write.
	BeforePartition func(ctx context.Context, part int) (context.Context, error)
	// AfterStored, if set, runs after partition part's records are stored
	// and before its completion record is written. An error stops the
	// write; the part stays incomplete. Fault drills use it.
	AfterStored func(ctx context.Context, part int) error
	// Counters, if set, is called with BeforePartition's context once the
	// partition is computed; its result is kept in the completion record.
	Counters func(ctx context.Context, part int) map[string]int64
	// OnPartition, if set, is called once for every partition: with
	// computed false for a partition found complete, true for one this
	// call computed. Calls may come from several goroutines at once.
	OnPartition func(done PartDone, computed bool)
}

// ResumableResult says what WriteResumable did.
type ResumableResult struct {
	Manifest Manifest
	Parts    []PartDone // one per partition, in partition order
	Computed []int      // partitions this call computed, ascending
	Reused   []int      // partitions found complete, ascending
	Removed  int        // part objects of incomplete or lost attempts deleted
}

// WriteResumable stores d under dir of st partition by partition,
// skipping partitions an earlier call completed, and writes the manifest
// once all are complete (see the layout above). It is safe to run again
// after a crash at any point, and by several processes at once. The
// result's checkpoint is read with OpenCheckpoint.
//
// The directory must hold only what resumable writes of the same dataset
// put there: a completion record for a partition number the dataset does
// not have, or a manifest with another record type or partition count, is
// refused.
func WriteResumable[T any](ctx context.Context, d *Dataset[T], st storage.Storage, dir string, opts ResumableOptions) (ResumableResult, error) {
	if opts.Attempt == "" || strings.ContainsAny(opts.Attempt, "/.") {
		return ResumableResult{}, fmt.Errorf("dataset: ResumableOptions.Attempt is %q; it must be a non-empty name without '/' or '.'", opts.Attempt)
	}
	codec, err := checkpointCodec(opts.Compression)
	if err != nil {
		return ResumableResult{}, err
	}
	if err := storage.ValidatePrefix(dir); err != nil {
		return ResumableResult{}, err
	}
	encoding, typ, n := encodingFor[T](), reflect.TypeFor[T]().String(), d.NumPartitions()
	where := strings.TrimSuffix(st.Location(), "/") + "/" + dir

	if m, err := readManifest(ctx, st, dir); err == nil {
		if m.Type != typ || len(m.Partitions) != n {
			return ResumableResult{}, fmt.Errorf("dataset: %s holds a checkpoint of %d partitions of %s, not %d of %s: use another directory, or delete this one",
				where, len(m.Partitions), m.Type, n, typ)
		}
		res := ResumableResult{Manifest: m}
		for p, info := range m.Partitions {
			pd := PartDone{PartInfo: info, Partition: p}
			if got, err := readDone(ctx, st, dir, p); err == nil {
				pd = got
			}
			res.Parts = append(res.Parts, pd)
			res.Reused = append(res.Reused, p)
			if opts.OnPartition != nil {
				opts.OnPartition(pd, false)
			}
		}
		return res, nil
	} else if !errors.Is(err, storage.ErrNotFound) {
		return ResumableResult{}, err
	}

	objs, err := st.List(ctx, dir+"/")
	if err != nil {
		return ResumableResult{}, fmt.Errorf("dataset: list %s: %w", where, err)
	}
	present := make(map[string]bool, len(objs))
	var doneParts []int
	for _, o := range objs {
		base := strings.TrimPrefix(o.Name, dir+"/")
		present[base] = true
		if p, ok := parseDoneName(base); ok {
			if p >= n {
				return ResumableResult{}, fmt.Errorf("dataset: %s has a completion record for partition %d, but the dataset has %d partitions: it was written by another plan; use another directory, or delete this one", where, p, n)
			}
			doneParts = append(doneParts, p)
		}
	}

	var mu sync.Mutex
	parts := make([]*PartDone, n)
	res := ResumableResult{}
	// Completion records found: read them, and check their parts exist.
	for _, p := range doneParts {
		pd, err := readDone(ctx, st, dir, p)
		if err != nil {
			return ResumableResult{}, err
		}
		if !present[pd.File] {
			// The part was lost. Completion records are never deleted by a
			// writer (another writer may be reading or replacing it at the
			// same moment), so the directory cannot be repaired in place:
			// the caller deletes it and writes again.
			return ResumableResult{}, &storage.CorruptError{Object: dir + "/" + pd.File, Offset: -1,
				Reason: fmt.Sprintf("partition %d is recorded complete in %s, but its part is missing: the stored output is damaged; delete %s to compute it again", p, donePartName(p), where)}
		}
		parts[p] = &pd
		if opts.OnPartition != nil {
			opts.OnPartition(pd, false)
		}
	}

	todo := make([]int, 0, n)
	for p := range n {
		if parts[p] == nil {
			todo = append(todo, p)
		} else {
			res.Reused = append(res.Reused, p)
		}
	}
	err = runPartitions(ctx, d.s, len(todo), func(ctx context.Context, i int) error {
		p := todo[i]
		pd, won, err := writeResumablePart(ctx, d, st, dir, p, encoding, codec, opts)
		if err != nil {
			return partitionError(d.n, p, err)
		}
		mu.Lock()
		parts[p] = &pd
		if won {
			res.Computed = append(res.Computed, p)
		} else {
			res.Reused = append(res.Reused, p)
		}
		mu.Unlock()
		if opts.OnPartition != nil {
			opts.OnPartition(pd, won)
		}
		return nil
	})
	if err != nil {
		return ResumableResult{}, fmt.Errorf("dataset: resumable write to %s: %w", where, err)
	}
	sort.Ints(res.Computed)
	sort.Ints(res.Reused)

	// Every partition is complete. Delete parts no record names (attempts
	// killed between storing a part and recording it), then the manifest.
	named := make(map[string]bool, n)
	for _, pd := range parts {
		named[pd.File] = true
	}
	for _, o := range objs {
		base := strings.TrimPrefix(o.Name, dir+"/")
		if strings.HasPrefix(base, partPrefix) && !strings.HasSuffix(base, doneSuffix) && !named[base] {
			if err := st.Delete(ctx, o.Name); err != nil {
				return ResumableResult{}, fmt.Errorf("dataset: delete the unfinished part %s: %w", o.Name, err)
			}
			res.Removed++
		}
	}
	m := Manifest{Type: typ, Encoding: encoding, Created: time.Now().UTC(), Lineage: d.Explain()}
	for _, pd := range parts {
		res.Parts = append(res.Parts, *pd)
		m.Partitions = append(m.Partitions, pd.PartInfo)
	}
	payload, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return ResumableResult{}, err
	}
	name := dir + "/" + ManifestObject
	err = frame.PutBytes(ctx, st, name, frame.KindManifest, manifestVersion, payload, storage.PutOptions{IfAbsent: true})
	if errors.Is(err, storage.ErrExists) {
		// Another writer finished first; its manifest names the same parts.
		if m, err = readManifest(ctx, st, dir); err != nil {
			return ResumableResult{}, err
		}
	} else if err != nil {
		return ResumableResult{}, fmt.Errorf("dataset: write checkpoint manifest %s: %w", name, err)
	}
	res.Manifest = m
	return res, nil
}

// writeResumablePart computes and stores partition p, then creates its
// completion record. won is false when another writer completed the
// partition first; pd is then the other writer's record.
func writeResumablePart[T any](ctx context.Context, d *Dataset[T], st storage.Storage, dir string, p int, encoding string, codec compress.Codec, opts ResumableOptions) (pd PartDone, won bool, err error) {
	start := time.Now()
	if opts.BeforePartition != nil {
		if ctx, err = opts.BeforePartition(ctx, p); err != nil {
			return PartDone{}, false, err
		}
	}
	file := resumablePartName(encoding, p, opts.Attempt)
	w := startPart[T](ctx, st, dir+"/"+file, encoding, codec)
	if err := d.compute(ctx, p, w.write); err != nil {
		w.abort(err)
		return PartDone{}, false, err
	}
	info, err := w.finish()
	if err != nil {
		return PartDone{}, false, err
	}
	info.File = file
	if opts.AfterStored != nil {
		if err := opts.AfterStored(ctx, p); err != nil {
			return PartDone{}, false, err
		}
	}
	pd = PartDone{PartInfo: info, Partition: p, Attempt: opts.Attempt, ElapsedNS: int64(time.Since(start)), Finished: time.Now().UTC()}
	if opts.Counters != nil {
		pd.Counters = opts.Counters(ctx, p)
	}
	payload, err := json.Marshal(pd)
	if err != nil {
		return PartDone{}, false, err
	}
	err = frame.PutBytes(ctx, st, dir+"/"+donePartName(p), frame.KindPartDone, partDoneVersion, payload, storage.PutOptions{IfAbsent: true})
	if errors.Is(err, storage.ErrExists) {
		other, rerr := readDone(ctx, st, dir, p)
		if rerr != nil {
			return PartDone{}, false, rerr
		}
		if other.File != file {
			if err := st.Delete(ctx, dir+"/"+file); err != nil {
				return PartDone{}, false, fmt.Errorf("dataset: delete the duplicate part %s/%s: %w", dir, file, err)
			}
		}
		return other, false, nil
	}
	if err != nil {
		return PartDone{}, false, fmt.Errorf("dataset: record partition %d of %s complete: %w", p, dir, err)
	}
	return pd, true, nil
}

func resumablePartName(encoding string, p int, attempt string) string {
	ext := ".records"
	if encoding == encodingParquet {
		ext = ".parquet"
	}
	return fmt.Sprintf("%s%05d-%s%s", partPrefix, p, attempt, ext)
}

func donePartName(p int) string { return fmt.Sprintf("%s%05d%s", partPrefix, p, doneSuffix) }

// parseDoneName returns the partition of a completion record's name.
func parseDoneName(base string) (int, bool) {
	if !strings.HasPrefix(base, partPrefix) || !strings.HasSuffix(base, doneSuffix) {
		return 0, false
	}
	p, err := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(base, partPrefix), doneSuffix))
	return p, err == nil && p >= 0
}

// readDone reads and checks partition p's completion record.
func readDone(ctx context.Context, st storage.Storage, dir string, p int) (PartDone, error) {
	name := dir + "/" + donePartName(p)
	payload, _, err := frame.GetBytes(ctx, st, name, frame.KindPartDone, partDoneVersion)
	if err != nil {
		return PartDone{}, err
	}
	var pd PartDone
	if err := json.Unmarshal(payload, &pd); err != nil {
		return PartDone{}, &storage.CorruptError{Object: name, Offset: -1, Reason: "completion record is not valid JSON: " + err.Error()}
	}
	if pd.Partition != p || pd.File == "" || strings.Contains(pd.File, "/") {
		return PartDone{}, &storage.CorruptError{Object: name, Offset: -1, Reason: fmt.Sprintf("completion record names partition %d, file %q", pd.Partition, pd.File)}
	}
	return pd, nil
}

// readManifest reads and checks the manifest of the checkpoint in dir.
func readManifest(ctx context.Context, st storage.Storage, dir string) (Manifest, error) {
	name := ManifestObject
	if dir != "" {
		name = dir + "/" + ManifestObject
	}
	payload, _, err := frame.GetBytes(ctx, st, name, frame.KindManifest, manifestVersion)
	if err != nil {
		return Manifest{}, err
	}
	var m Manifest
	if err := json.Unmarshal(payload, &m); err != nil {
		return Manifest{}, &storage.CorruptError{Object: name, Offset: -1, Reason: "manifest is not valid JSON: " + err.Error()}
	}
	return m, nil
}

// ReadManifest returns the manifest of the complete checkpoint under dir
// of st ("" for the root). It fails with an error matching
// storage.ErrNotFound when the checkpoint is not complete.
func ReadManifest(ctx context.Context, st storage.Storage, dir string) (Manifest, error) {
	return readManifest(ctx, st, dir)
}

// ReadPartDone returns the completion record of partition p of the
// resumable write under dir of st, or an error matching
// storage.ErrNotFound when that partition is not complete.
func ReadPartDone(ctx context.Context, st storage.Storage, dir string, p int) (PartDone, error) {
	return readDone(ctx, st, dir, p)
}

// OpenCheckpoint opens the complete checkpoint under dir of st (written by
// WriteResumable or kept by Checkpoint) as a dataset of s. T must be the
// type it was written with. Reading checks each part's size and CRC32C.
func OpenCheckpoint[T any](ctx context.Context, s *Session, st storage.Storage, dir string) (*Dataset[T], error) {
	return readCheckpointFrom[T](ctx, s, st, dir)
}
