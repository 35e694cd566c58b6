// Package frame is the envelope around every object cairn writes: a header
// that names the object kind and format version, the payload in checksummed
// chunks, and a trailer with the payload's length and checksum.
//
//	header (12 bytes)
//	+-----------------+---------+------------+---------------+-----------------------+
//	| magic "\x89CRN" | kind 1B | version 1B | reserved 2B=0 | CRC32C(bytes 0..8) 4B |
//	+-----------------+---------+------------+---------------+-----------------------+
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
package frame
