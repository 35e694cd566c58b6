// Package memstate is the in-memory state store provider, registered as
// "memstate". It is modelled on Spark's HDFS-backed state store, with
// commits whose cost grows with the number of changes, not with the size
// of the state.
//
// In memory, the latest version is a hash map (point reads and writes) and
// a copy-on-write B-tree of the same entries (ordered Range and PrefixScan,
// and O(1) clones for snapshots). A writable store keeps its uncommitted
// writes in an overlay map; Commit writes them as one delta, then applies
// them in place. Read-only stores of the latest version share the B-tree
// through a clone; older versions are rebuilt from files.
//
// Files, in the store's directory of the checkpoint location, each framed
// (internal/frame: magic, kind, format version, identity, checksummed
// chunks). Format 2 (format 1, still read, had no identity) records the
// object's identity, "<name> store=<UID>" (state.Meta.ObjectIdentity), e.g.
// "state/0/1/25.delta store=3f9c...":
//
//	<v>.delta     the changes of version v, each key once, in the order the
//	              batch first wrote it (deterministic for a deterministic batch):
//	              +--------+----------------+-----+------------------+-------+
//	              | op 1B  | key len uvarint | key | value len uvarint | value |  op 1 = put
//	              +--------+----------------+-----+------------------+-------+
//	              | op 1B  | key len uvarint | key |                             op 2 = delete
//	              +--------+----------------+-----+
//	<v>.snapshot  the whole state at version v, keys strictly ascending:
//	              +----------------+-----+------------------+-------+
//	              | key len uvarint | key | value len uvarint | value |  ...
//	              +----------------+-----+------------------+-------+
//
// Invariants:
//
//  1. Version v is the snapshot s <= v with the greatest s, plus the deltas
//     s+1..v applied in order (version 0 is the empty state). A delete in a
//     delta removes the key, so a key deleted at v9 stays deleted when v9 is
//     rebuilt from deltas.
//  2. Commit writes <v+1>.delta with create-if-absent. If it exists with the
//     same bytes (a replayed batch), the commit succeeds; with other bytes, it
//     fails with state.ErrConcurrentWriter.
//  3. A crash at any point leaves every committed version loadable: deltas
//     and snapshots appear whole or not at all, and maintenance deletes the
//     oldest files first.
//  4. Maintenance (a goroutine every Options.MaintenanceInterval, sooner when
//     a commit leaves SnapshotInterval deltas since the last snapshot) writes
//     a snapshot of the latest version from a B-tree clone, without stopping
//     the writer, then deletes the files that the oldest of the last
//     RetainVersions versions does not need.
//  5. Keys and values are opaque bytes; slices a store returns must not be
//     modified.
//  6. Every file is what its name says. A load refuses a delta or snapshot
//     whose identity is not its own name and store (24.delta copied over
//     25.delta, an older snapshot over a newer one, another partition's or
//     another location's file) with a *storage.CorruptError naming it, and
//     so does VerifyObject. A replayed commit compares payloads, so a delta
//     written in format 1 accepts the replay of its batch.
package memstate
