package dataset

// Recorded from the implementation when it was made part of the format;
// a change here needs a new format version and a migration of state.
var stableHashGolden = map[string]uint64{
	"string": 0x7d0abcd8e2111067,
	"int64":  0xa759ea27d4727622,
	"struct": 0x85666957e4c0ba5a,
}
