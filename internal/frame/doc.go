// Package frame is the envelope around every object cairn writes: a header
// that names the object kind and format version, optionally the object's
// identity, the payload in checksummed chunks, and a trailer with the
// payload's length and checksum.
//
//	header (12 bytes)
//	+-----------------+---------+------------+----------+-----------------------+
//	| magic "\x89CRN" | kind 1B | version 1B | flags 2B | CRC32C(bytes 0..8) 4B |
//	+-----------------+---------+------------+----------+-----------------------+
//	flags: bit 0 = an identity block follows; the other bits are 0
//	identity block (only with flag bit 0)
//	+---------------------+----------------------+--------------------------------------------+
//	| length 2B (1..1024) | identity (UTF-8 text) | CRC32C(header, length, identity) 4B        |
//	+---------------------+----------------------+--------------------------------------------+
//	chunk, repeated (payload split into chunks of at most 64 KiB when written)
//	+---------------+-----------------------------+-----------------+
//	| length 4B > 0 | CRC32C(length, payload) 4B  | payload         |
//	+---------------+-----------------------------+-----------------+
//	end (20 bytes)
//	+------------+--------------------------------+--------------------+--------------------+
//	| length 4B=0| CRC32C(0, total, payloadCRC) 4B| total length 8B    | CRC32C(payload) 4B |
//	+------------+--------------------------------+--------------------+--------------------+
//	then the end of the object: a byte after the end block is corruption.
//
// Integers are little-endian; CRC32C is the Castagnoli polynomial.
//
// # Identity
//
// A checksum proves that an object is whole, not that it is the right
// object: 24.delta copied over 25.delta, or partition 1's state copied into
// partition 0, is whole and wrong. So an object can record what it is, its
// Identity, inside its checked bytes: by convention its own name relative
// to the root of its storage, then qualifiers that tie it to its owner,
// e.g. "state/0/1/25.delta store=3f9c0d1e..." (a state store's random ID)
// or "offsets/25" (a log entry). The reader derives the identity it expects
// from the name it reads and the owner it reads for, and refuses another
// one with a *storage.CorruptError that names the object, what it holds
// and what its name calls for (Reader.CheckIdentity, or the want argument
// of Get, GetBytes and Decode).
//
// Objects written before identities existed (flags 0) record none and are
// accepted as before: there is nothing to check. A format starts recording
// an identity in a new format version, so that an older build refuses the
// object as too new (storage.ErrFormatVersion) rather than as damaged.
//
// Invariants:
//
//  1. A Reader returns only payload bytes whose chunk checksum it has
//     verified, and returns io.EOF only after the end block checks out and
//     the object ends there. Every other ending (truncation, flipped bit,
//     trailing bytes, wrong kind) is a *storage.CorruptError naming the
//     object and the byte offset.
//  2. Writing streams: the Writer holds one chunk in memory, whatever the
//     object's size. An object whose Writer was not closed has no end block
//     and reads as truncated.
//  3. A reader accepts every format version up to the newest it knows; a
//     newer one is refused with storage.ErrFormatVersion.
//  4. An identity is returned only after its own checksum, which also
//     covers the header, checks out; a header flag this build does not
//     know is corruption. An object that records an identity other than
//     the one its reader expects is refused, never read.
//
// Usage:
//
//	name := "state/0/1/25.delta"
//	id := frame.Identity(name + " store=" + storeID)
//	err := frame.Put(ctx, s, name, frame.KindDelta, 2, storage.PutOptions{IfAbsent: true}, writePayload, id)
//	...
//	r, err := frame.Get(ctx, s, name, frame.KindDelta, 2, id) // refuses 24.delta copied here
package frame
