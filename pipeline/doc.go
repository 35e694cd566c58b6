// Package pipeline runs resumable batch pipelines: DAGs of named stages
// over the dataset engine whose outputs are checkpointed partition by
// partition, so that a job on pre-emptible machines picks up where it left
// off. After a crash (a pre-empted spot instance, a SIGKILL), the next
// invocation resumes the same run: complete stages are restored, not
// recomputed; a stage killed midway recomputes only the partitions that
// were not complete; and once the final output is published the run's
// intermediate data is deleted.
//
// # Stages and fingerprints
//
// A stage is a function from its input stages' datasets to one dataset
// (Source, Then, Combine), with a version the user bumps when its logic
// changes and parameters. Its fingerprint hashes its name, version,
// parameters, record type, requested partitions, its inputs' fingerprints,
// and for source files their names, sizes and modification times (or
// checksums). A stage is restored only from output of the same
// fingerprint, so a changed version, parameter or input file recomputes
// that stage and everything downstream, and the log says what changed.
//
// # Runs
//
// Each invocation of Run either resumes the latest run, if it is
// incomplete, or starts a new one (Options.Fresh always starts a new one
// and restores nothing). A new run restores stages from published runs
// whose stage outputs were kept (KeepIntermediates, RetainRuns,
// RetainFor), when the fingerprints match. When the latest run published
// every output from the current fingerprints and the outputs are still in
// place, the pipeline is up to date, as a Make target is: Run does
// nothing and says so.
//
// Stage functions must be deterministic in what they put in each
// partition: a resumed stage keeps the partitions an earlier attempt
// stored and computes the others again, and the two must fit together.
// dataset's operators are (stable hashing, first-seen order); a FromFunc
// source must be too (one partition a file, in name order, is).
//
// # Layout
//
// Everything lives under the pipeline's checkpoint location, as framed,
// checksummed objects (kind 'P' records, 'p' completion records) and plain
// Parquet parts:
//
//	_pipeline                                  pipeline name (a location holds one pipeline)
//	_lease/<gen>                               writer lease: one live run at a time
//	runs/000007/_run                           run started: time, host, pid, fresh
//	runs/000007/stages/<stage>/<fp>/_stage     stage spec (what the fingerprint hashes), partitions
//	runs/000007/stages/<stage>/<fp>/part-00003-<attempt>.parquet
//	runs/000007/stages/<stage>/<fp>/part-00003.done     partition complete: file, rows, bytes, CRC32C, counters
//	runs/000007/stages/<stage>/<fp>/_manifest  stage complete: every part (written last)
//	runs/000007/stages/<stage>/<fp>/_stats     rows, bytes, compute time, counters
//	runs/000007/refs/<stage>                   stage read from another run's kept output
//	runs/000007/_published                     outputs published (the run is complete)
//	runs/000007/_cleaned                       intermediate data deleted
//
// # Invariants
//
//  1. A partition is complete exactly when its .done record exists; the
//     record is created if absent after its part is stored, so a crash
//     between the two leaves an incomplete partition (recomputed) and an
//     unnamed part (deleted when the stage completes).
//  2. A stage is complete exactly when its _manifest exists; it is
//     written after every partition is complete.
//  3. A run is complete exactly when _published exists; it is written
//     after every output is in place. Until then the next invocation
//     resumes the run (unless Options.Fresh).
//  4. A local output directory appears whole, by rename; other locations
//     get _SUCCESS after every part.
//  5. Clean-up deletes manifests before parts, never deletes a stage
//     output another live run reads (refs), and never runs beside a run
//     (GC takes the lease).
//
// # Checkpoint policy: what to store
//
// Storing a stage costs writing and reading its output once; not storing
// it costs recomputing it after every crash downstream of it. Always (the
// default) suits expensive stages (joins, aggregations, anything reading
// slow sources). Never suits cheap narrow stages (a filter, a projection)
// whose input is checkpointed: recomputing them costs less than a
// round-trip through storage. IfLongerThan(d) decides at run time, from
// how long the stage took; it computes the stage whole before storing it,
// so a crash during it loses all of it. StageOptions.Partitions sets how
// finely a stage is checkpointed: with P partitions a crash loses at most
// the partitions in flight (Parallelism of them), about Parallelism/P of
// the stage, at the price of P objects and per-object overhead. Stages on
// the critical path of a long pipeline deserve more, smaller partitions.
//
// # Usage
//
//	p, err := pipeline.New("etl", pipeline.Options{Checkpoint: "s3://bucket/etl"})
//	orders := pipeline.Source(p, "orders", pipeline.StageOptions{Version: "1", Files: []string{"in/orders/*.jsonl"}},
//		func(ctx context.Context, s *dataset.Session) (*dataset.Dataset[Order], error) { ... })
//	daily := pipeline.Then(p, "daily", pipeline.StageOptions{Version: "1"}, orders, func(...) { ... })
//	pipeline.Publish(p, daily, "out/daily", dataset.WriteOptions{})
//	report, err := p.Run(ctx) // resumes the latest incomplete run
//
// For drills, Options.FailAt or the CAIRN_FAIL_AT environment variable
// ("stage" or "stage:partition") stop the process at that point with exit
// status 3, and DropStage deletes a stage's output as if storage had lost
// it. ListRuns and GC back the 'cairn pipeline status' and 'cairn pipeline
// gc' commands; Verify, which checks every stage part against its
// completion record and stage manifest, backs 'cairn checkpoint verify'.
package pipeline
