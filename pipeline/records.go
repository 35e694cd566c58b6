package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/storage"
)

// Names of the objects of a pipeline's checkpoint location (see doc.go).
const (
	pipelineObject  = "_pipeline"
	runsPrefix      = "runs/"
	runObject       = "_run"
	publishedObject = "_published"
	cleanedObject   = "_cleaned"
	specObject      = "_stage"
	statsObject     = "_stats"
)

// recordVersion is the format version of every pipeline record. Version
// 1: JSON. Version 2: the same JSON, and the frame records the object's own
// name as its identity, so that a record copied over another (one run's
// or stage's over another's) is refused, naming it.
const recordVersion = 2

func runDir(id string) string                   { return runsPrefix + id }
func stagesDir(id string) string                { return runDir(id) + "/stages/" }
func stageDir(id, name, fp string) string       { return stagesDir(id) + name + "/" + fp }
func refObject(id, name string) string          { return runDir(id) + "/refs/" + name }
func runRecordObject(id, obj string) string     { return runDir(id) + "/" + obj }
func formatRunID(n int) string                  { return fmt.Sprintf("%06d", n) }
func stageObject(id, name, fp, o string) string { return stageDir(id, name, fp) + "/" + o }

// pipelineRecord pins the pipeline's name to its location.
type pipelineRecord struct {
	Pipeline string    `json:"pipeline"`
	Created  time.Time `json:"created"`
}

// runRecord starts a run.
type runRecord struct {
	Pipeline string    `json:"pipeline"`
	Run      string    `json:"run"`
	Started  time.Time `json:"started"`
	Host     string    `json:"host,omitempty"`
	PID      int       `json:"pid,omitempty"`
	Fresh    bool      `json:"fresh,omitempty"`
}

// stageRecord is written in a stage's directory before its partitions.
type stageRecord struct {
	Spec       stageSpec `json:"spec"`
	Index      int       `json:"index"` // position in the pipeline
	Partitions int       `json:"partitions"`
	Policy     string    `json:"policy"`
	Started    time.Time `json:"started"`
}

// statsRecord is written after a stage's manifest: what computing it cost.
type statsRecord struct {
	Rows      int64            `json:"rows"`
	Bytes     int64            `json:"bytes"`
	ElapsedNS int64            `json:"elapsed_ns"` // wall time of the stage, summed over the runs that computed parts of it
	Counters  map[string]int64 `json:"counters,omitempty"`
	Finished  time.Time        `json:"finished"`
}

// refRecord says a run restored a stage from another run's output.
type refRecord struct {
	Run         string `json:"run"`
	Stage       string `json:"stage"`
	Fingerprint string `json:"fingerprint"`
}

// publishedRecord ends a run: its outputs are published.
type publishedRecord struct {
	Finished time.Time     `json:"finished"`
	Outputs  []Publication `json:"outputs"`
	Kept     bool          `json:"kept,omitempty"` // KeepIntermediates: retention never deletes this run's stage outputs
}

// cleanedRecord says a run's intermediates were deleted.
type cleanedRecord struct {
	At      time.Time `json:"at"`
	Objects int       `json:"objects"`
	Bytes   int64     `json:"bytes"`
}

func putRecord(ctx context.Context, st storage.Storage, name string, v any, ifAbsent bool) error {
	payload, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return frame.PutBytes(ctx, st, name, frame.KindPipeline, recordVersion, payload, storage.PutOptions{IfAbsent: ifAbsent}, frame.Identity(name))
}

func getRecord(ctx context.Context, st storage.Storage, name string, v any) error {
	payload, _, err := frame.GetBytes(ctx, st, name, frame.KindPipeline, recordVersion, frame.Identity(name))
	if err != nil {
		return err
	}
	if err := json.Unmarshal(payload, v); err != nil {
		return &storage.CorruptError{Object: name, Offset: -1, Reason: "pipeline record is not valid JSON: " + err.Error()}
	}
	return nil
}

// runInfo is what a listing of runs/ shows of one run.
type runInfo struct {
	id        string
	num       int
	hasRecord bool
	published bool
	cleaned   bool
	stages    map[string]map[string]*stageInfo // name -> fingerprint -> info
	refs      []string                         // stage names with a ref record
	objects   int
	bytes     int64
}

// stageInfo is what a listing shows of one stage directory.
type stageInfo struct {
	name, fp    string
	hasSpec     bool
	hasManifest bool
	done        int // completion records
	objects     int
	bytes       int64
}

func (r *runInfo) stage(name, fp string) *stageInfo {
	if m := r.stages[name]; m != nil {
		return m[fp]
	}
	return nil
}

// scanRuns groups a listing of runs/ by run, oldest first. Objects that
// do not fit the layout are counted in their run but otherwise ignored.
func scanRuns(objs []storage.ObjectInfo) []*runInfo {
	byID := map[string]*runInfo{}
	for _, o := range objs {
		rest, ok := strings.CutPrefix(o.Name, runsPrefix)
		if !ok {
			continue
		}
		id, rest, _ := strings.Cut(rest, "/")
		n, err := strconv.Atoi(id)
		if err != nil || n <= 0 {
			continue
		}
		r := byID[id]
		if r == nil {
			r = &runInfo{id: id, num: n, stages: map[string]map[string]*stageInfo{}}
			byID[id] = r
		}
		r.objects++
		r.bytes += o.Size
		parts := strings.Split(rest, "/")
		switch {
		case rest == runObject:
			r.hasRecord = true
		case rest == publishedObject:
			r.published = true
		case rest == cleanedObject:
			r.cleaned = true
		case len(parts) == 2 && parts[0] == "refs":
			r.refs = append(r.refs, parts[1])
		case len(parts) >= 4 && parts[0] == "stages":
			name, fp := parts[1], parts[2]
			if r.stages[name] == nil {
				r.stages[name] = map[string]*stageInfo{}
			}
			si := r.stages[name][fp]
			if si == nil {
				si = &stageInfo{name: name, fp: fp}
				r.stages[name][fp] = si
			}
			si.objects++
			si.bytes += o.Size
			base := strings.Join(parts[3:], "/")
			switch {
			case base == specObject:
				si.hasSpec = true
			case base == dataset.ManifestObject:
				si.hasManifest = true
			case strings.HasPrefix(base, "part-") && strings.HasSuffix(base, ".done"):
				si.done++
			}
		}
	}
	runs := make([]*runInfo, 0, len(byID))
	for _, r := range byID {
		runs = append(runs, r)
	}
	sort.Slice(runs, func(i, j int) bool { return runs[i].num < runs[j].num })
	return runs
}

// listRuns lists and scans the runs at st.
func listRuns(ctx context.Context, st storage.Storage) ([]*runInfo, error) {
	objs, err := st.List(ctx, runsPrefix)
	if err != nil {
		return nil, fmt.Errorf("pipeline: list runs in %s: %w", st.Location(), err)
	}
	return scanRuns(objs), nil
}

// checkPipelineRecord pins the pipeline name to the location, creating the
// record on first use.
func checkPipelineRecord(ctx context.Context, st storage.Storage, name string, now time.Time) error {
	var rec pipelineRecord
	err := getRecord(ctx, st, pipelineObject, &rec)
	if errors.Is(err, storage.ErrNotFound) {
		err = putRecord(ctx, st, pipelineObject, pipelineRecord{Pipeline: name, Created: now.UTC()}, true)
		if errors.Is(err, storage.ErrExists) {
			err = getRecord(ctx, st, pipelineObject, &rec)
		} else if err == nil {
			return nil
		}
	}
	if err != nil {
		return fmt.Errorf("pipeline: read %s/%s: %w", st.Location(), pipelineObject, err)
	}
	if rec.Pipeline != name {
		return fmt.Errorf("pipeline: %s holds the checkpoints of pipeline %q, not %q: give this pipeline its own checkpoint location", st.Location(), rec.Pipeline, name)
	}
	return nil
}
