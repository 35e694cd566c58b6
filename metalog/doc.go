// Package metalog keeps the versioned logs of a checkpoint location, such
// as the offsets and commits logs of a streaming query (Spark Structured
// Streaming's offsets/ and commits/ directories), and the lease that keeps
// a checkpoint location to one writer.
//
// A Log is a sequence of entries numbered by contiguous IDs (batch IDs).
// Each entry is one immutable object, created only if absent, so a second
// writer is detected by the storage itself and never overwrites the first
// one's entry. Payloads are opaque bytes owned by the caller.
//
// # Layout
//
// In a storage.Storage (one checkpoint location):
//
//	<location>/
//	├── offsets/                 a Log opened with prefix "offsets"
//	│   ├── 5                    entry 5 (entries before 5 were purged)
//	│   ├── 6                    names are plain decimal IDs, no padding:
//	│   ├── ...                  List order ("10" < "9") is not ID order
//	│   └── 12                   the latest entry
//	├── commits/                 another Log, same layout
//	│   └── ...
//	└── _lease/                  the writer lease, see AcquireLease
//	    └── 4                    generation 4, the newest (older ones are
//	                             deleted after a takeover)
//
// Every object is framed by internal/frame (magic, kind, format version,
// CRC32C):
//
//	log entry  <prefix>/<id>   kind 'l' (frame.KindLogEntry), version 2,
//	                           identity = its own name, e.g. "offsets/25"
//	                           (relative to the storage the Log is opened
//	                           on); payload = the caller's bytes. Version 1
//	                           (no identity) is still read.
//	lease      _lease/<gen>    kind 'L' (frame.KindLease), version 1,
//	                           payload = JSON {"token", "owner", "host",
//	                           "boot_id", "pid_ns", "pid", "start",
//	                           "acquired", "expires", "released"}
//
// # Invariants
//
//  1. Contiguous IDs. The entries of a log have the IDs Earliest,
//     Earliest+1, ..., Latest with no gap. Open refuses a log with a gap
//     with a *GapError naming the missing IDs and how to recover, and an
//     object whose name is not a canonical decimal ID with an error naming
//     it.
//  2. Create if absent. Add writes entry Latest+1 with a conditional
//     create (storage.PutOptions.IfAbsent) and never replaces an entry. If
//     the entry exists, another writer is using the location: Add returns
//     an error matching ErrConcurrentWriter naming the object, and the Log
//     is unchanged. Latest moves only after a successful Add.
//  3. Entries are what their names say. Get refuses an entry that records
//     the name of another (copied over this one, say 24 over 25, or from
//     another log) with a *storage.CorruptError naming it. An entry written
//     before identities (format 1) records none and is read as before.
//  4. Purge order. Purge deletes entries oldest first, so a crash or an
//     error part-way leaves a contiguous log. It never deletes the latest
//     entry, the one a restart resumes from.
//  5. One writer. A checkpoint location has one live writer. The lease
//     refuses a second one up front (AcquireLease returns a
//     *LeaseHeldError naming the holder's host and pid); create-if-absent
//     on the logs is the fence that stays correct even when the lease
//     misjudges (see 7).
//  6. Lease takeover. The newest generation _lease/<gen> is the lease. A
//     process may take it over only when it is released, expired, or held
//     by a process of this machine (same host name, boot and pid
//     namespace, on Linux) whose pid has exited or been reused; it does so
//     by creating _lease/<gen+1> if absent, so of several contenders
//     exactly one wins. A holder renews every TTL/3 after checking that no
//     newer generation exists; finding one, or failing to renew until
//     TTL/5 before expiry, it closes Lost and must stop writing. The
//     newest generation is never deleted, so a superseded holder can always
//     tell it lost.
//  7. Limits of the lease. Expiry compares the holder's clock (which wrote
//     the expiry) with the contender's: clock skew between hosts must stay
//     well below TTL/5, or a live holder can be taken over. A holder paused
//     longer than its TTL (a stopped VM, a long GC pause) may write for up
//     to TTL/3 after a takeover before it notices; invariant 2 keeps the
//     logs correct meanwhile. A pid reused by another process on the same
//     machine keeps the lease held until expiry where the start time of a
//     process cannot be read (outside Linux). A holder on another machine
//     that died blocks the location until its lease expires (TTL, default
//     30 s). Object stores that list with a lag can hide the newest entry
//     from Open, which then reports a concurrent writer on the next Add.
//
// # Usage
//
// First acquire the lease, and stop work when it is lost:
//
//	lease, err := metalog.AcquireLease(ctx, s, metalog.LeaseOptions{Owner: "query clicks"})
//	if errors.Is(err, metalog.ErrLeaseHeld) {
//		return err // names the other process and what to do
//	}
//	defer lease.Close(ctx)
//
// Then open the logs and resume from the latest entry:
//
//	offsets, err := metalog.Open(ctx, s, "offsets")
//	next := int64(0)
//	if id, ok := offsets.Latest(); ok {
//		next = id + 1 // or re-run batch id if it has no commit yet
//	}
//
// Write ahead, run, commit after:
//
//	err = offsets.Add(ctx, next, plannedOffsets)
//	// ... run the batch, make its state and output durable ...
//	err = commits.Add(ctx, next, commitRecord)
//	if errors.Is(err, metalog.ErrConcurrentWriter) {
//		// another process is running this query: stop
//	}
//
// and from time to time drop old entries:
//
//	err = offsets.Purge(ctx, next-100) // keep 100, like Spark's minBatchesToRetain
package metalog
