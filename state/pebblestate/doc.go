// Package pebblestate is the state store provider backed by Pebble,
// registered as "pebble", for state larger than memory. It is modelled on
// Spark's RocksDB state store with changelog checkpointing and on Flink's
// incremental RocksDB checkpoints: the state lives in a local Pebble
// database, a cache; checkpoint storage holds the truth, as a changelog per
// version and, every SnapshotInterval versions, a snapshot that uploads
// only the SST files not uploaded before.
//
// Reads and writes map to Pebble: a writable store is an indexed batch
// over the database (it reads its own writes; Range and PrefixScan merge
// the batch with the database, in byte order); Commit writes the batch's
// operations as the version's changelog, durably, and only then applies
// the batch to the database, without fsync, with the version recorded in
// the same batch. Abort discards the batch. A read store of the version
// the database holds reads a Pebble snapshot; another version is rebuilt
// in a temporary database.
//
// Memory is bounded by Options (block cache, memtable size and count),
// not by the size of the state. Metrics().Custom reports, among others,
// keysEstimated, sstBytes, lastSnapshotUploadedBytes,
// lastSnapshotReusedFiles, changelogBytes, getNanos and putNanos (sampled
// averages) and loadMillis.
//
// Objects, in the store's directory of the checkpoint location. The
// changelogs and manifests are framed in format 2, which records each
// object's identity, "<name> store=<UID>" (state.Meta.ObjectIdentity); a
// load and VerifyObject refuse one whose identity is not its own name and
// store (copied from another version, partition or location), naming it.
// Format 1, without identity, is still read.
//
//	<v>.changelog      framed (internal/frame, kind 'c'): the operations of
//	                   version v's batch, in the order they were made (a
//	                   deterministic batch writes the same bytes):
//	                   +-------+-----------------+-----+-------------------+-------+
//	                   | op 1B | key len uvarint | key | value len uvarint | value |  op 1 = put
//	                   +-------+-----------------+-----+-------------------+-------+
//	                   | op 1B | key len uvarint | key |                            op 2 = delete
//	                   +-------+-----------------+-----+
//	<v>.checkpoint     framed (kind 'S'): the manifest of a snapshot of version
//	                   v, a Pebble checkpoint, files in ascending name order:
//	                   +-------------------+--------------------+---------+
//	                   | version uvarint   | file count uvarint | file... |
//	                   +-------------------+--------------------+---------+
//	                   file: | name len uvarint | name | type 1B | size uvarint | CRC32C 4B |
//	                   then for type 1 (an SST, stored as a shared object): | SHA-256 32B |
//	                   and for type 2 (MANIFEST, OPTIONS, markers, inline): | bytes |
//	<sha256>.sst       an SST file, raw, named by the SHA-256 of its bytes, shared
//	                   by every snapshot that lists it; its size, CRC32C and
//	                   SHA-256 are checked against the manifest on download
//
// The local working directory (Options.Dir):
//
//	cairn.lock         held by the provider that works here
//	db/                the store's Pebble database, reused by the next run;
//	                   its key "\x00meta" holds the store's identity, version
//	                   and key count; the store's keys are behind 0x01
//	read-<n>/          a database built for a read store of an older version
//	checkpoint-<n>/    a local Pebble checkpoint being uploaded
//	instance-<pid>-*/  the working directory of a second provider of the store
//
// Invariants:
//
//  1. Version v is the newest snapshot s <= v (version 0 is empty) plus
//     the changelogs s+1..v applied in order, each as one batch.
//  2. Commit writes <v+1>.changelog with create-if-absent before it
//     touches the local database. If the changelog exists with the same
//     bytes (a replayed batch), the commit succeeds; with other bytes, it
//     fails with state.ErrConcurrentWriter and the database is unchanged.
//  3. The local database is never ahead of checkpoint storage, and its
//     meta key changes in the same batch as the data, so after a crash
//     (its WAL is off) it is at some committed version it names. It is
//     reused only if it carries this store's identity (a hash of the
//     location, the store and the creation time of its _meta) and a
//     version no newer than the one asked for; it then replays the
//     changelogs after it. Otherwise it is rebuilt from checkpoint storage.
//  4. A snapshot uploads its SST files before its manifest, so a manifest
//     only names objects that exist. SST objects are named by content, so
//     databases rebuilt on other machines never collide, and an upload is
//     a create-if-absent of bytes that are the same whoever wrote them.
//  5. Maintenance deletes the changelogs and snapshots that no retained
//     version (the last RetainVersions) needs, oldest first, then the SST
//     objects no remaining manifest lists. It assumes one writer per
//     location (a second writer's snapshot in progress could lose files).
//  6. Nothing is renamed in checkpoint storage; every object but the SST
//     files is framed, and every byte read back is checked: damage is a
//     *storage.CorruptError naming the object.
//
// A full or failed local disk. Pebble cannot live with a failed write:
// it retries a failed flush at once and forever (a Flush, and a write
// waiting for room in the memtables, never return), and it treats a failed
// MANIFEST write as fatal (Logger.Fatalf, which must not return). So the
// provider's databases work through a file system (diskfs.go) that fails
// the provider at the first write that fails with ENOSPC, EDQUOT, EIO or
// EROFS, or at Pebble's first fatal error:
//
//  1. The failure is sticky. Every later call of the provider (GetStore,
//     GetReadStore, Commit, Maintain) returns it at once; it matches
//     syscall.ENOSPC (errors.Is) for a full disk and names the working
//     directory. A call already blocked in Pebble returns it too: calls
//     that write to a database run on a goroutine of their own, and the
//     caller stops waiting when the disk fails or its context ends.
//  2. From the failure on, the failed directory takes no more writes:
//     Pebble's retries get the error without touching the disk, at most
//     ten a second, and its warnings and errors are logged at most five
//     every 10 s (the count of those not logged goes with the next one,
//     and with Close).
//  3. Logger.Fatalf records the error as the failure, releases the
//     database's lock and parks its goroutine for good, as Pebble
//     requires; the process does not panic and can exit cleanly.
//  4. Close does not flush on a failed disk, and waits at most a second
//     for a database to close (10 s on a healthy disk); a database that
//     does not close in time, or that Pebble stopped, is left as a crash
//     would leave it. The next provider (after a restart, once there is
//     space) reuses the local database if it opens at a committed version
//     (invariant 3), or rebuilds it from checkpoint storage: a failed
//     local disk loses no committed version, and a commit that failed
//     after its changelog was written is found committed, as a replayed
//     batch is.
//
// Usage: as every provider, through state.Open with Name; the provider's
// own settings go in state.Options.Provider:
//
//	p, err := state.Open(ctx, pebblestate.Name, location, id, schema, state.Options{
//		Provider: pebblestate.Options{Dir: "/var/lib/cairn/state", BlockCacheSize: 256 << 20},
//	})
package pebblestate
