package metalog

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// maxListedMissing bounds GapError.Missing, so that one stray object named
// "offsets/999999999999" cannot make Open allocate gigabytes.
const maxListedMissing = 1000

// maxRangesInMessage bounds the ranges an error message spells out.
const maxRangesInMessage = 20

// GapError reports a log whose entry IDs are not contiguous: entries
// between the earliest and the latest are missing. cairn never makes a gap
// (Add only appends the next ID, Purge deletes oldest first); a gap means
// objects were deleted or lost outside cairn.
type GapError struct {
	// Location is the checkpoint location, as storage.Storage.Location.
	Location string
	// Log is the prefix of the log, such as "offsets".
	Log string
	// Missing lists the missing IDs in ascending order: all of them, or the
	// first maxListedMissing (1000) when NumMissing is larger.
	Missing []int64
	// NumMissing is the number of missing IDs.
	NumMissing int64
	// LastContiguous is the last ID of the contiguous run that starts at
	// the earliest entry: the entry the log rolls back to if the entries
	// in After are deleted.
	LastContiguous int64
	// After lists the IDs present after the first gap, ascending.
	After []int64
}

func (e *GapError) Error() string {
	var b strings.Builder
	missing := e.missingRanges()
	fmt.Fprintf(&b, "metalog: log %s in %s is missing %s %s; entries must be contiguous, so objects were deleted or lost outside cairn. ",
		e.Log, e.Location, plural(e.NumMissing, "entry", "entries"), formatRanges(missing, ""))
	fmt.Fprintf(&b, "To recover, restore %s from a backup, or delete %s (the entries after the gap) to roll the query back to entry %d, the last contiguous one, and recompute from there",
		formatRanges(missing, e.Log+"/"), formatRanges(toRanges(e.After), e.Log+"/"), e.LastContiguous)
	return b.String()
}

// missingRanges recomputes the missing ranges from LastContiguous and
// After, which hold every present ID past the gap, so the message is
// complete even when Missing is truncated.
func (e *GapError) missingRanges() []idRange {
	var out []idRange
	prev := e.LastContiguous
	for _, id := range e.After {
		if id > prev+1 {
			out = append(out, idRange{prev + 1, id - 1})
		}
		prev = id
	}
	return out
}

type idRange struct{ lo, hi int64 }

// toRanges compresses sorted IDs into runs.
func toRanges(ids []int64) []idRange {
	var out []idRange
	for _, id := range ids {
		if n := len(out); n > 0 && out[n-1].hi+1 == id {
			out[n-1].hi = id
			continue
		}
		out = append(out, idRange{id, id})
	}
	return out
}

// formatRanges writes ranges as "5-9, 12", or with a prefix as
// "offsets/5 to offsets/9, offsets/12", eliding all but the first
// maxRangesInMessage.
func formatRanges(rs []idRange, prefix string) string {
	parts := make([]string, 0, min(len(rs), maxRangesInMessage)+1)
	for i, r := range rs {
		if i == maxRangesInMessage {
			parts = append(parts, fmt.Sprintf("and %d more ranges", len(rs)-i))
			break
		}
		lo, hi := prefix+strconv.FormatInt(r.lo, 10), prefix+strconv.FormatInt(r.hi, 10)
		switch {
		case r.lo == r.hi:
			parts = append(parts, lo)
		case prefix == "":
			parts = append(parts, lo+"-"+hi)
		default:
			parts = append(parts, lo+" to "+hi)
		}
	}
	return strings.Join(parts, ", ")
}

func plural(n int64, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}

// checkContiguous returns a *GapError if the sorted ids have a gap.
func checkContiguous(location, prefix string, ids []int64) error {
	first := -1
	for i := 1; i < len(ids); i++ {
		if ids[i] != ids[i-1]+1 {
			first = i
			break
		}
	}
	if first < 0 {
		return nil
	}
	e := &GapError{
		Location:       location,
		Log:            prefix,
		LastContiguous: ids[first-1],
		After:          slices.Clone(ids[first:]),
	}
	for i := first; i < len(ids); i++ {
		for id := ids[i-1] + 1; id < ids[i]; id++ {
			if len(e.Missing) == maxListedMissing {
				break
			}
			e.Missing = append(e.Missing, id)
		}
		e.NumMissing += ids[i] - ids[i-1] - 1
	}
	return e
}
