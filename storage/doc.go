// Package storage is cairn's checkpoint storage: a flat namespace of
// immutable objects with slash-separated names, the one place where cairn's
// checkpoints touch a disk or an object store.
//
// It promises what object stores give, and nothing they do not, so every
// layer above works the same on a laptop's disk and on S3:
//
//  1. Put is atomic: a reader sees all of an object or none of it, and a
//     crash during Put leaves the old object (or none), never a part.
//  2. Put with IfAbsent is a conditional create: of two writers creating one
//     name, exactly one succeeds; the other gets an error matching ErrExists.
//     Versioned logs and lease objects rely on it to detect a second writer.
//  3. There is no rename and no append. Code above this package never
//     relies on an object appearing in List right after its Put.
//  4. A name is slash-separated components, none empty, "." or "..";
//     components starting with ".cairn-" are reserved for backends.
//
// Backends:
//
//	file:///abs/path, or a plain path   Local: temp file in DIR/.cairn-tmp,
//	                                    fsync, rename (link for IfAbsent),
//	                                    fsync of the directory
//	mem://name                          Mem: in process, shared by name
//	s3://bucket/prefix?endpoint=...     package storage/s3 (import it to
//	                                    register the scheme): S3 or any
//	                                    server with conditional writes
//	                                    (If-None-Match: *), checked at open
//
// Package storage/faulty wraps any backend to fail or "crash" at the k-th
// operation, and storage/storagetest is the conformance suite every backend
// passes.
//
// Above storage, every object cairn writes is framed (magic, kind, format
// version, length, CRC32C; see internal/frame). A damaged object surfaces as
// a *CorruptError naming the object; it never decodes to wrong data.
//
// Usage:
//
//	s, err := storage.Open(ctx, "/var/lib/cairn/checkpoint")
//	...
//	err = storage.PutBytes(ctx, s, "offsets/7", data, storage.PutOptions{IfAbsent: true})
//	if errors.Is(err, storage.ErrExists) {
//		// another writer got there first
//	}
package storage
