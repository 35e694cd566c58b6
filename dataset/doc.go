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
// Bad records. A record of an input file (ReadJSONL, ReadCSV, ReadParquet,
// and FileDecoder, which the streaming file source uses) is bad when it does
// not decode, when it lacks a required field, or when its text is not valid
// UTF-8. By default the first bad record fails the action with a
// *RecordError naming the file, the line (Parquet: the row group and row)
// and the field; ReadOptions.SkipBadRecords skips and counts them
// (BadRecords), and the streaming file source can send them to a
// dead-letter object. Spark: mode FAILFAST, and DROPMALFORMED or
// Databricks' badRecordsPath.
//
// Required fields are marked with a struct tag on the field of the record
// type, or, for types you cannot tag, listed in ReadOptions.Required:
//
//	type Click struct {
//		User string    `json:"user" cairn:"required"`
//		TS   time.Time `json:"ts" cairn:"required"`
//		N    int64     `json:"n"` // optional: absent reads as 0
//	}
//
// A required field is missing (errors.Is(err, ErrMissingField)) when
//
//	JSONL    its key is absent or its value is null ("" and 0 are values)
//	CSV      its field is empty (CSV has no null; Spark's CSV nullValue is "" too)
//	Parquet  its value is null (a nullable column in the file)
//
// The nearest Spark notion is a non-nullable field of the read schema
// (StructField nullable=false), but Spark's file sources read every field
// as nullable, so there a missing field becomes a null in every mode
// (FAILFAST fails only records that do not parse); a Go struct has no null
// to hold it, so cairn checks instead. Only fields of the record type
// itself (and of the structs it embeds) can be required, and only
// single-valued Parquet columns; a cairn tag anywhere else, or one other
// than cairn:"required", is an error when the source is made, as is a
// required field the format cannot fill (json:"-", csv:"-"). FileDecoder
// reads the tags too, so the streaming file source checks them with no
// option set.
//
// Invalid UTF-8 (errors.Is(err, ErrInvalidUTF8)) is a bad record by
// default: in JSONL anywhere in the line (JSON text must be UTF-8, RFC
// 8259), in CSV in any field, in Parquet in any string of the record type.
// The error names the field: for JSONL its path ("user", "tags[2]",
// "meta.name"). With ReadOptions.AllowInvalidUTF8 such records are read
// with each invalid byte replaced by U+FFFD, as encoding/json does; two
// values that differ only in their invalid bytes then read as one, so a
// key made of them merges with another.
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
