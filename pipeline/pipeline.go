package pipeline

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"reflect"
	"regexp"
	"time"

	"github.com/cairn-data/cairn/dataset"
	"github.com/cairn-data/cairn/storage"
)

// Policy says when a stage's output is checkpointed.
type Policy struct {
	never  bool
	longer time.Duration // checkpoint only if the stage ran at least this long
}

// Always checkpoints the stage's output, partition by partition (the
// default). A restart never recomputes a complete partition.
var Always = Policy{}

// Never does not checkpoint the stage: a restart recomputes it from its
// inputs when a later stage needs it. Use it for stages cheaper to compute
// than to store and read back (a filter or a projection of a checkpointed
// input).
var Never = Policy{never: true}

// IfLongerThan checkpoints the stage only if computing it took at least d.
// The stage is computed into the session's cache first (memory, spilling
// to disk), timed, and written to checkpoint storage from the cache only
// when it was slow, so quick stages cost no storage. A restart recomputes
// a stage that was not written. The whole stage is computed before any of
// it is stored, so a crash during such a stage loses all of it.
func IfLongerThan(d time.Duration) Policy { return Policy{longer: d} }

func (p Policy) String() string {
	switch {
	case p.never:
		return "never"
	case p.longer > 0:
		return "if longer than " + p.longer.String()
	}
	return "always"
}

// StageOptions describe a stage. Everything but Checkpoint and Compression
// is part of the stage's fingerprint: changing it recomputes the stage and
// every stage downstream.
type StageOptions struct {
	// Version of the stage's logic. Bump it when the function changes, so
	// that a resumed or new run recomputes the stage instead of restoring
	// output made by the old logic. Default "".
	Version string
	// Params are the stage's parameters, marshalled as JSON into the
	// fingerprint (a threshold, a date range). Default nil.
	Params any
	// Files are glob patterns of the files a source stage reads. Each
	// matching file's name, size and modification time enter the
	// fingerprint, so a changed input recomputes the stage. A pattern that
	// matches nothing is an error.
	Files []string
	// FileChecksums fingerprints Files by a CRC32C of their contents
	// instead of size and modification time: slower (every byte is read
	// at every start), but blind to touched-but-unchanged files.
	FileChecksums bool
	// Checkpoint is the policy: Always (default), Never, or IfLongerThan.
	Checkpoint Policy
	// Partitions, if positive, repartitions the stage's output into this
	// many partitions before it is checkpointed. More, smaller partitions
	// mean each is stored sooner, so a crash loses less work; they cost
	// more objects and more per-object overhead. Give stages on the
	// critical path, or long ones on machines that are often pre-empted,
	// more partitions. Default: the partitioning the stage's function
	// returns.
	Partitions int
	// Compression of the checkpointed Parquet parts: "none" (default),
	// "snappy" or "zstd".
	Compression string
}

// Options configure a pipeline. Checkpoint (or Storage) is required.
type Options struct {
	// Checkpoint is the pipeline's checkpoint location: a path, file:///
	// or mem:// URL (any storage.Open URL). Runs, stage outputs and the
	// writer lease live there.
	Checkpoint string
	// Storage, if set, is used instead of opening Checkpoint (tests use
	// it for fault-injecting storage). The pipeline does not close it.
	Storage storage.Storage
	// Dataset configures the dataset session the stages run in
	// (Parallelism, Partitions, MemoryLimit, SpillDir). Its checkpoint
	// fields are not used.
	Dataset dataset.Options
	// Fresh starts a new run even if the latest run is incomplete, and
	// restores nothing: every stage is computed. Default false: resume the
	// latest run if it is incomplete. Metaflow: a plain "run" against
	// "resume".
	Fresh bool
	// KeepIntermediates keeps this run's stage outputs after the final
	// output is published. Default false: they are deleted.
	KeepIntermediates bool
	// RetainRuns keeps the stage outputs of the last RetainRuns published
	// runs (this one included); older ones are deleted when a run
	// publishes. Default 0.
	RetainRuns int
	// RetainFor keeps the stage outputs of runs published less than
	// RetainFor ago. Default 0.
	RetainFor time.Duration
	// FailAt makes the run stop as a pre-empted machine would, for tests
	// and drills: "stage" stops when the stage starts computing,
	// "stage:N" when partition N of the stage is stored but not yet
	// recorded complete. Default: the CAIRN_FAIL_AT environment variable.
	FailAt string
	// Exit ends the process at FailAt. Default os.Exit (status 3). If Exit
	// returns, Run returns an error matching ErrFailInjected.
	Exit func(code int)
	// Output receives a progress bar per stage when it is a terminal, and
	// the summary table at the end. Default nil: neither.
	Output io.Writer
	// Logger receives structured events: runs, stages, partitions,
	// clean-up. Default slog.Default().
	Logger *slog.Logger
	// LeaseTTL is the writer lease's time to live; see
	// metalog.LeaseOptions. Default 30 s.
	LeaseTTL time.Duration
	// Now returns the current time (records and lease expiry). Default
	// time.Now.
	Now func() time.Time
}

// FailExitStatus is the exit status of a process stopped by FailAt.
const FailExitStatus = 3

// ErrFailInjected is returned by Run when Options.FailAt is reached and
// Options.Exit returned.
var ErrFailInjected = errors.New("pipeline: failure injected")

// Validate reports an option out of range, naming it.
func (o Options) Validate() error {
	if o.Checkpoint == "" && o.Storage == nil {
		return errors.New("pipeline: Options.Checkpoint is empty: give the pipeline a checkpoint location (a path, file:///path or mem://name)")
	}
	if o.RetainRuns < 0 {
		return fmt.Errorf("pipeline: Options.RetainRuns is %d; it must be 0 or more", o.RetainRuns)
	}
	if o.RetainFor < 0 {
		return fmt.Errorf("pipeline: Options.RetainFor is %v; it must be 0 or more", o.RetainFor)
	}
	if _, _, err := parseFailAt(o.FailAt); err != nil {
		return err
	}
	return nil
}

func (o Options) withDefaults() Options {
	if o.FailAt == "" {
		o.FailAt = os.Getenv("CAIRN_FAIL_AT")
	}
	if o.Exit == nil {
		o.Exit = os.Exit
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Pipeline is a DAG of named stages. Stages are added with Source, Then
// and Combine, each naming stages added before it as inputs, so the order
// of addition is a topological order. Run runs it. A Pipeline is not safe
// for concurrent use while stages are added.
type Pipeline struct {
	name    string
	opts    Options
	stages  []*stage
	byName  map[string]*stage
	outputs []*output
	err     error // the first error of building the pipeline, returned by Run
}

// Stage is a handle on a stage whose output is a dataset of T.
type Stage[T any] struct{ s *stage }

// Name returns the stage's name.
func (s *Stage[T]) Name() string { return s.s.name }

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// New returns an empty pipeline. The name identifies the pipeline at its
// checkpoint location: a location that holds another pipeline is refused.
func New(name string, opts Options) (*Pipeline, error) {
	if !nameRE.MatchString(name) {
		return nil, fmt.Errorf("pipeline: name %q: use 1 to 64 letters, digits, '_' or '-', starting with a letter or digit", name)
	}
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	return &Pipeline{name: name, opts: opts.withDefaults(), byName: map[string]*stage{}}, nil
}

// Name returns the pipeline's name.
func (p *Pipeline) Name() string { return p.name }

// stage is the untyped part of a stage; typed operations go through ops.
type stage struct {
	index  int
	name   string
	opts   StageOptions
	inputs []*stage
	typ    reflect.Type
	ops    stageOps
	// build computes the stage's dataset from its inputs' datasets, in
	// the order of inputs.
	build func(ctx context.Context, s *dataset.Session, in []any) (any, error)
}

// add registers a stage, or records why it cannot be.
func (p *Pipeline) add(name string, so StageOptions, typ reflect.Type, ops stageOps, inputs []*stage, build func(context.Context, *dataset.Session, []any) (any, error)) *stage {
	s := &stage{index: len(p.stages), name: name, opts: so, inputs: inputs, typ: typ, ops: ops, build: build}
	switch {
	case p.err != nil:
	case !nameRE.MatchString(name):
		p.err = fmt.Errorf("pipeline %s: stage name %q: use 1 to 64 letters, digits, '_' or '-', starting with a letter or digit", p.name, name)
	case p.byName[name] != nil:
		p.err = fmt.Errorf("pipeline %s: two stages are named %q; stage names must be unique", p.name, name)
	case so.Partitions < 0:
		p.err = fmt.Errorf("pipeline %s: stage %s: StageOptions.Partitions is %d; it must be 0 (keep the stage's partitioning) or more", p.name, name, so.Partitions)
	}
	for _, in := range inputs {
		if in == nil || p.byName[in.name] != in {
			if p.err == nil {
				p.err = fmt.Errorf("pipeline %s: stage %s: an input is not a stage of this pipeline", p.name, name)
			}
		}
	}
	if p.err == nil {
		p.stages = append(p.stages, s)
		p.byName[name] = s
	}
	return s
}

// Source adds a stage without stage inputs: it reads files (list them in
// so.Files, so that a changed file recomputes the stage) or makes data.
func Source[T any](p *Pipeline, name string, so StageOptions, fn func(ctx context.Context, s *dataset.Session) (*dataset.Dataset[T], error)) *Stage[T] {
	return &Stage[T]{p.add(name, so, reflect.TypeFor[T](), typedOps[T]{}, nil,
		func(ctx context.Context, s *dataset.Session, _ []any) (any, error) { return fn(ctx, s) })}
}

// Then adds a stage computed from one input stage.
func Then[A, T any](p *Pipeline, name string, so StageOptions, a *Stage[A], fn func(ctx context.Context, a *dataset.Dataset[A]) (*dataset.Dataset[T], error)) *Stage[T] {
	return &Stage[T]{p.add(name, so, reflect.TypeFor[T](), typedOps[T]{}, []*stage{stageOf(a)},
		func(ctx context.Context, _ *dataset.Session, in []any) (any, error) {
			return fn(ctx, in[0].(*dataset.Dataset[A]))
		})}
}

// Combine adds a stage computed from two input stages (a join, a union).
func Combine[A, B, T any](p *Pipeline, name string, so StageOptions, a *Stage[A], b *Stage[B], fn func(ctx context.Context, a *dataset.Dataset[A], b *dataset.Dataset[B]) (*dataset.Dataset[T], error)) *Stage[T] {
	return &Stage[T]{p.add(name, so, reflect.TypeFor[T](), typedOps[T]{}, []*stage{stageOf(a), stageOf(b)},
		func(ctx context.Context, _ *dataset.Session, in []any) (any, error) {
			return fn(ctx, in[0].(*dataset.Dataset[A]), in[1].(*dataset.Dataset[B]))
		})}
}

func stageOf[T any](s *Stage[T]) *stage {
	if s == nil {
		return nil
	}
	return s.s
}

// output is a stage published as the pipeline's final output.
type output struct {
	stage    *stage
	location string
	opts     dataset.WriteOptions
}

// Publish makes stage s a final output of the pipeline: when every stage
// it needs is complete, its records are written as Parquet under location
// (a local directory, or any storage.Open URL) with a _SUCCESS object
// last. A local directory appears whole: the files are written to a
// staging directory beside it, which then replaces it in one rename. An
// existing output at location is replaced. T must be a struct type.
func Publish[T any](p *Pipeline, s *Stage[T], location string, opts dataset.WriteOptions) {
	switch {
	case p.err != nil:
	case s == nil || p.byName[s.s.name] != s.s:
		p.err = fmt.Errorf("pipeline %s: Publish: the stage is not a stage of this pipeline", p.name)
	case location == "":
		p.err = fmt.Errorf("pipeline %s: Publish %s: the location is empty", p.name, s.s.name)
	case reflect.TypeFor[T]().Kind() != reflect.Struct:
		p.err = fmt.Errorf("pipeline %s: Publish %s: records of type %v cannot be written as Parquet; map them into a struct first", p.name, s.s.name, reflect.TypeFor[T]())
	default:
		p.outputs = append(p.outputs, &output{stage: s.s, location: location, opts: opts})
	}
}

// stageOps are the typed operations the runner needs on a stage's
// datasets, which it holds as any.
type stageOps interface {
	partitions(d any) int
	repartition(d any, n int) any
	cache(d any) any
	count(ctx context.Context, d any) (int64, error)
	write(ctx context.Context, d any, st storage.Storage, dir string, opts dataset.ResumableOptions) (dataset.ResumableResult, error)
	open(ctx context.Context, s *dataset.Session, st storage.Storage, dir string) (any, error)
	publish(ctx context.Context, d any, location string, opts dataset.WriteOptions) (dataset.WriteReport, error)
}

type typedOps[T any] struct{}

func (typedOps[T]) partitions(d any) int { return d.(*dataset.Dataset[T]).NumPartitions() }
func (typedOps[T]) repartition(d any, n int) any {
	return d.(*dataset.Dataset[T]).Repartition(n)
}
func (typedOps[T]) cache(d any) any { return d.(*dataset.Dataset[T]).Cache() }
func (typedOps[T]) count(ctx context.Context, d any) (int64, error) {
	return d.(*dataset.Dataset[T]).Count(ctx)
}
func (typedOps[T]) write(ctx context.Context, d any, st storage.Storage, dir string, opts dataset.ResumableOptions) (dataset.ResumableResult, error) {
	return dataset.WriteResumable(ctx, d.(*dataset.Dataset[T]), st, dir, opts)
}
func (typedOps[T]) open(ctx context.Context, s *dataset.Session, st storage.Storage, dir string) (any, error) {
	return dataset.OpenCheckpoint[T](ctx, s, st, dir)
}
func (typedOps[T]) publish(ctx context.Context, d any, location string, opts dataset.WriteOptions) (dataset.WriteReport, error) {
	return d.(*dataset.Dataset[T]).WriteParquet(ctx, location, opts)
}
