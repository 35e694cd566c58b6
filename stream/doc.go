// Package stream runs micro-batch streaming queries with exactly-once
// output across crashes, on the dataset engine and state stores.
//
// A Query reads a Source in batches, runs a Plan over each batch (dataset
// transformations plus stateful operators such as AggregateByKey), and
// hands the result to a Sink with the batch ID. Its checkpoint location
// is laid out like Spark Structured Streaming's:
//
//	metadata                  query ID, creation time, cairn version, pinned settings
//	offsets/<batch>           write-ahead: the batch's source range, written before it runs
//	commits/<batch>           written after the batch's state and sink output are durable
//	state/<op>/<partition>/   state stores, version = batch ID
//	sources/0/                the source's own objects (FileSource: its log of taken files,
//	                          their compactions, operators' decisions, dead letters)
//	_lease/<generation>       the writer lease
//
// Invariants:
//
//  1. Write ahead, commit after. offsets/<b> exists before batch b reads a
//     record; commits/<b> is written only after every state store of b is
//     committed and the sink accepted b.
//  2. Replay. On start, a batch in offsets but not in commits is run again
//     with exactly its recorded range. Sources are deterministic by range,
//     shuffles are deterministic, state stores accept a re-commit of the
//     same changes, and sinks replace a batch by ID: the output is exactly
//     once.
//  3. One writer. A second live query on a location is refused by the
//     lease; the logs' create-if-absent entries fence a writer that missed
//     losing its lease.
//  4. Pinned settings. Partitions, state provider, stateful operators,
//     source and sink are recorded at the first start; a restart that
//     changes one is refused with a *PinnedSettingError naming old and new.
//  5. A drained query is finished. Trigger.Drain runs what is available,
//     then one last batch with the watermark at infinity, so that every
//     window closes, as Flink's stop-with-drain does; the location is then
//     sealed. A later Start whose source has new input is refused with a
//     *DrainedError (ErrDrained) naming the drain batch and when it ran:
//     running it would drop every new row as late. A later Start with no
//     new input is done at once (Run returns nil). Jobs run on a schedule
//     over input that keeps arriving use Trigger.UntilIdle, which keeps
//     windows open across runs; to process input that arrived after a
//     drain, start a new query with a new checkpoint location.
//
// A second query over a file sink. A FileSink records the queries that
// write it (_sink/<generation>: query ID and checkpoint location, created
// if absent at a query's first start), and its location is pinned in
// canonical form (absolute, symbolic links resolved), so a restart from
// another working directory writes to the same place. A query with
// another checkpoint location (another query ID) that starts over a sink
// written by someone else is refused (ErrSinkOwned, naming the owner),
// unless FileSinkOptions.IfOwned is "replace" (the new query's owner
// record is written first; readers then read only its output, and the
// older output is removed before its first batch) or "append" (it writes
// in a namespace of its own, owner-<generation>/, so batch IDs never
// collide; readers read every owner's output). A restart whose committed
// batches have no manifest in the sink is refused (ErrSinkOutputMissing,
// naming them), and readers warn about missing batches.
//
// Late rows and bad records. Event-time operators (WindowAggregate,
// DropDuplicates) drop a row later than the batch's watermark, as Spark
// does, but never silently:
//
//   - BatchProgress.LateRows and OperatorProgress.LateRows count them, per
//     operator, in every batch's progress line (late_rows).
//   - A batch in which one operator drops more than
//     Options.LateWarnFraction of the batch's input rows (default 1%) logs
//     a WARN naming the operator, its kind and the watermark.
//   - With Options.LateRows, a Sink[LateRow], they are written there (the
//     operator, the reason, the event time, the watermark, the record as
//     JSON) with the batch ID, before the batch commits: with a FileSink,
//     exactly once, like the query's output. This is Flink's side output
//     for late data, as a dead-letter destination.
//
// A record whose event time is zero (the event-time function of
// WithWatermark, WindowAggregate or DropDuplicates returned time.Time{},
// typically a field missing from the input) is a bad record, not an old
// one: it fails the batch with an *OperatorError that names the operator
// and the record, or, with Options.LateRows, goes there with the reason
// "zero event time" and is counted in BadRows.
//
// Errors. A failure of an operator or of its state store is an
// *OperatorError (batch, operator ID and kind, partition, what it was
// doing). Operators run while the sink computes the batch, so the sink's
// error wraps it; the query's error then names the operator first, and
// errors.As finds both the OperatorError and its cause.
//
// Operators: AggregateByKey (update mode), WindowAggregate (tumbling and
// sliding event-time windows, append mode), DropDuplicates (within the
// watermark), FlatMapGroupsWithState (event- and processing-time
// timeouts), WithWatermark; any dataset transformation, including a join
// with a static dataset. Sources: FileSource (a directory of JSONL, CSV or
// Parquet files), GeneratorSource, MemorySource. Sinks: FileSink (exactly
// once through per-batch manifests), ForEachBatch, MemorySink.
//
// # Bad input files and skipped files
//
// A FileSource fails a batch on the first bad record, or on a file that
// cannot be decoded at all, naming the file (and line). With
// FileSourceOptions.DeadLetter (or DeadLetterLocation, a directory outside
// the checkpoint), bad records and undecodable files are written to a
// dead-letter object per input file and counted in the batch's progress
// (dead_letters); a replay writes the same objects. Each taken file's size
// and CRC32C are recorded when it is taken, and a read of different bytes
// fails naming the file.
//
// An operator unblocks a query stuck on a file with SkipFile (the batch
// goes on without it) or RereadFile (read it as it is now, after a fix):
// 'cairn source skip' and 'cairn source reread'. The decision is an object
// in the checkpoint location, followed by every replay; it applies to the
// batch that reads the file if that batch is not committed (the pending
// batch, or a later one), and never changes what a committed batch read:
// a committed file cannot be skipped, and re-reading it takes it again as
// a new file, read by the next new batch.
//
// The log of taken files is compacted every FileSourceOptions.CompactEvery
// files (default 100) into one checksummed object that names itself and
// the entries it holds, so a restart reads a bounded number of objects.
// There is no retention bound (Spark's maxFileAge): every taken name is
// kept, since forgetting one would take the file again if it is still in
// the directory; a compaction costs about 100 bytes per file taken.
package stream
