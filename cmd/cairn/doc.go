// Command cairn runs the demo job of cairn and looks into checkpoint
// locations: it verifies every byte of one, describes what it holds,
// cleans up what a stopped streaming query no longer needs, prints the
// contents of a state store version or of a file sink, lists and
// garbage-collects the runs of a resumable batch pipeline, and lets an
// operator skip, or read again, an input file of a streaming query.
//
// # Commands
//
//	cairn demo [--dir DIR] [--versions N] [--seed S]
//
// The main job for now, end to end on local disk. A child process (this
// program, run with the hidden demo-writer command) commits N versions
// (default 300) of random puts and deletes to the state store state/0/0
// of a checkpoint location (DIR/checkpoint, or a temporary directory
// removed at the end). The demo kills the child with SIGKILL at a random
// point, reopens the location, checks that it holds at least the last
// version the child reported and that this version equals, key by key, an
// in-memory oracle (a Go map that replayed the same updates); then a second
// child resumes from the recovered version to N, the final state is
// compared again and every object is verified. The seed, printed, decides
// the updates and the kill point; --seed replays a run. Exit status 1 if
// anything differs.
//
//	cairn checkpoint verify DIR [--sink SINK]
//
// Reads every object of the location and checks it fully: the frame
// (magic, known kind, format version, chunk checksums, end block), every
// record of state deltas and snapshots, and that the latest version of
// each state store loads. For a streaming query it also checks the
// metadata, that the offsets and commits logs are contiguous and decode,
// that commits never run ahead of offsets, that at most one batch is
// pending, and that the operators' stores hold the last committed
// version; with --sink, every manifest and part (size, CRC32C) of the
// query's file sink. One line per problem, naming the object, then a
// summary; exit status 1 if there is a problem. Files that cairn did not
// write are problems too.
//
//	cairn checkpoint inspect DIR [--json]
//
// Describes the streaming query of the location, if any (ID, pinned
// settings, first and last batch of the logs, last committed and pending
// batch, watermarks, state size per operator), its state stores
// (provider, schema, latest and oldest loadable version, snapshots,
// deltas, bytes), and counts the other objects per top-level prefix with
// their kinds, as aligned text or as a JSON document whose fields --help
// documents.
//
//	cairn checkpoint clean DIR --retain N [--dry-run]
//
// Deletes the offsets and commits entries of the batches before the last
// N committed ones (never a log's latest entry, nor a pending batch) and
// runs every state store's maintenance with N retained versions. It takes
// the location's writer lease first and refuses while a live query holds
// it. Prints each object deleted and the objects and bytes freed; with
// --dry-run it takes no lease and deletes nothing.
//
//	cairn state read DIR --operator N --partition P [--name NAME] [--version V]
//
// Prints a store's keys and values at version V (default: the latest) as
// JSON lines in key order, {"key":...,"value":...}, with key_base64 or
// value_base64 (standard base64) for bytes that are not valid UTF-8.
//
//	cairn sink read DIR [--batch N]
//
// Prints the rows of the committed batches of a file sink as JSON lines,
// checking every part against its manifest.
//
//	cairn pipeline status URL [--json]
//
// Lists the runs of a resumable pipeline (package pipeline) at its
// checkpoint location URL, oldest first: state (incomplete, published,
// published with its intermediates deleted), start and publication time,
// objects and bytes, and per stage output its fingerprint, completeness,
// partitions and size. With --json, one document with snake_case fields
// that --help documents. A location without a pipeline is an error.
//
//	cairn pipeline gc URL [--older-than D] [--dry-run]
//
// Removes incomplete runs that a later (fresh) run superseded; with
// --older-than D, also the latest run if it is incomplete, and the stage
// outputs of published runs that were not kept, and only what is at least
// D old. Stage outputs a remaining run reads are kept. It takes the
// location's writer lease and refuses while a run holds it; --dry-run
// takes no lease and deletes nothing. Prints a line per run and the
// objects and bytes freed.
//
//	cairn pipeline drop-stage URL STAGE
//
// Deletes a stage's stored output in the latest run, as if storage had
// lost it: the next run recomputes that stage. The way out when a run
// stops on a damaged stage object (the error suggests it), and a drill.
//
//	cairn source skip DIR FILE
//	cairn source reread DIR FILE
//
// Record, in the checkpoint location DIR of a stopped streaming query over
// a file source, that the source skips FILE, a file it has taken, or reads
// it again as it is now (after a fix). The decision is kept in the
// checkpoint (sources/0/decisions/), so every replay follows it, and never
// changes what a committed batch read: a file of a committed batch cannot
// be skipped, and one re-read is taken again as a new file. Both take the
// location's writer lease and refuse while the query runs.
//
//	cairn version
//	cairn help [COMMAND]
//
// DIR is a directory path or a storage URL (file:///abs/path). Flags may
// come before or after DIR. Every command takes --help. Exit status 2 means
// the command line was wrong, 1 that the command failed or found a
// problem.
//
// # Examples
//
//	go run ./cmd/cairn demo
//	go run ./cmd/cairn demo --dir /tmp/cairn-demo --versions 1000
//	go run ./cmd/cairn checkpoint verify /tmp/cairn-demo/checkpoint
//	go run ./cmd/cairn checkpoint inspect /tmp/cairn-demo/checkpoint --json
//	go run ./cmd/cairn checkpoint clean /tmp/job/checkpoint --retain 10 --dry-run
//	go run ./cmd/cairn state read /tmp/cairn-demo/checkpoint --operator 0 --partition 0 --version 950
//	go run ./cmd/cairn pipeline status /tmp/etl/checkpoint
//	go run ./cmd/cairn pipeline gc /tmp/etl/checkpoint --older-than 168h --dry-run
//	go run ./cmd/cairn source skip /tmp/clicks/checkpoint clicks-00042.jsonl
//
// # Why the standard flag package
//
// The command line has a handful of subcommands, each with a few flags.
// The standard library's flag package, with a small dispatcher on the
// first one or two words and a loop that lets flags follow positional
// arguments (flag alone stops at the first one), does all of it, so cairn
// takes on no dependency, and no dependency's release cycle, for its CLI.
// Should the command tree grow deep (nested groups, shell completion), a
// library such as cobra would be worth its weight; not before.
package main
