package iox

import (
	"hash/crc32"
	"io"
)

// Castagnoli is the CRC32C table every cairn checksum uses.
var Castagnoli = crc32.MakeTable(crc32.Castagnoli)

// CountingWriter counts the bytes written through it to W and, for
// callers that want it, their CRC32C.
type CountingWriter struct {
	W     io.Writer
	N     int64  // bytes written
	CRC32 uint32 // CRC32C of those bytes
}

// Write implements io.Writer.
func (c *CountingWriter) Write(b []byte) (int, error) {
	n, err := c.W.Write(b)
	c.CRC32 = crc32.Update(c.CRC32, Castagnoli, b[:n])
	c.N += int64(n)
	return n, err
}
