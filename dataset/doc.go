// Package dataset is cairn's batch engine: lazy, partitioned, typed
// datasets whose lineage a checkpoint can cut, as Spark's
// Dataset.checkpoint does, for iterative jobs whose plans would otherwise
// grow without end.
//
// A Session holds the options (parallelism, checkpoint location, memory
// limit). Sources (FromSlice, ReadParquet, ReadJSONL, ReadCSV) and
// transformations (Map, Filter, FlatMap, MapPartitions, Union, Repartition,
// ReduceByKey, GroupByKey, Join, LeftOuterJoin, Distinct, SortBy) build a
// plan and compute nothing; actions (Collect, Count, Reduce,
// ForEachPartition, WriteParquet, WriteJSONL) run it, Parallelism
// partitions at a time, and stop promptly when their context is cancelled.
//
// Invariants:
//
//  1. Determinism. Shuffles route records by a stable hash (the same in
//     every process) and keep first-seen order, so the same plan over the
//     same input gives the same records in the same partitions in the same
//     order, every run. Streaming replay relies on it.
//  2. A reliable checkpoint is complete exactly when its manifest exists.
//     Parts are written first, the manifest last; every part's size and
//     CRC32C are in the manifest and are checked when it is read, so a
//     damaged part is a *storage.CorruptError naming it.
//  3. A lazy checkpoint computes nothing twice: the first action writes
//     each partition while it computes it, and later actions read the files.
//  4. Nothing is left behind: Session.Close deletes the session's
//     checkpoints (manifest first) and spill files, unless kept.
//
// Checkpoint layout, under Options.CheckpointLocation:
//
//	<session id>/ckpt-<n>/part-00000.parquet   one plain Parquet file per partition
//	<session id>/ckpt-<n>/part-00001.parquet   (part-NNNNN.records, framed gob, for
//	...                                         types Parquet cannot hold)
//	<session id>/ckpt-<n>/_manifest            framed JSON: type, encoding, and per part
//	                                            its file, records, bytes and CRC32C
//
// Reading a kept checkpoint from other tools: the parts are ordinary
// Parquet files, so
//
//	duckdb -c "SELECT * FROM read_parquet('/ckpt/dir/part-*.parquet')"
//
//	import pandas as pd
//	df = pd.read_parquet("/ckpt/dir", engine="pyarrow")  # _manifest is skipped: it has no .parquet suffix
//
// and from another cairn process, ReadCheckpoint[T](ctx, session, dir).
// Only a directory with a _manifest is a complete checkpoint: check for it
// before reading the parts with another tool.
//
// Which checkpoint to use:
//
//	Checkpoint(ctx, true)       reliable, written now; survives the process
//	Checkpoint(ctx, false)      reliable, written during the first action
//	LocalCheckpoint(ctx, eager) in this process only (memory, spilling to disk);
//	                            faster, LOST IF THE PROCESS DIES
//	Persist / Cache             keeps computed partitions but keeps the lineage
//	PeriodicCheckpointer        every N iterations, deleting the previous checkpoint
package dataset
