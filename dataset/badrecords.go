package dataset

import (
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"weak"
)

// ReadOptions configure the file sources ReadJSONL, ReadCSV and ReadParquet.
// The zero value reads fail fast.
type ReadOptions struct {
	// SkipBadRecords drops records that do not decode and goes on; the
	// dataset's BadRecords report counts them and keeps the first few
	// locations, and the session's Logger warns once per partition. Default
	// false: the first bad record fails the action with a *RecordError.
	// Spark: mode DROPMALFORMED when true, FAILFAST when false. (Spark's own
	// default, PERMISSIVE, turns bad fields into nulls; cairn has no nulls to
	// hide them in, so it offers no such mode.)
	SkipBadRecords bool
	// MaxSampleBadRecords is how many bad-record locations the report keeps.
	// Default 5; negative keeps none (the count is always exact).
	MaxSampleBadRecords int
	// Strict makes a JSON field that T does not have a bad record
	// (json.Decoder.DisallowUnknownFields). Default false: unknown fields
	// are ignored, as encoding/json does. Only ReadJSONL uses it.
	Strict bool
	// Required names fields of T that every record must have, as the
	// struct tag `cairn:"required"` does, for types you cannot tag: each
	// name is a Go field name of T or the name the format gives the field
	// (JSON key, CSV column, Parquet column). A name that is not a field of
	// T is an error when the source is made. Default none. See the package
	// documentation, "Bad records", for what "missing" means per format.
	// Spark has no such check: its file sources read every field of the
	// schema as nullable.
	Required []string
	// AllowInvalidUTF8 accepts text that is not valid UTF-8, with each
	// invalid byte replaced by U+FFFD, as encoding/json does in JSON
	// strings: in JSONL, anywhere in the line; in CSV, in any field; in
	// Parquet, in any string of T (top-level or nested). Two values that
	// differ only in their invalid bytes then read as the same string.
	// Default false: a record with invalid UTF-8 is a bad record naming the
	// file, line (or row group and row) and field.
	AllowInvalidUTF8 bool
}

func (o ReadOptions) maxSamples() int {
	switch {
	case o.MaxSampleBadRecords == 0:
		return 5
	case o.MaxSampleBadRecords < 0:
		return 0
	}
	return o.MaxSampleBadRecords
}

// RecordError is a record of an input file that could not be decoded: where
// it is and why. An action over a fail-fast source returns it (wrapped in a
// *PartitionError; use errors.As); a report of skipped records lists them.
type RecordError struct {
	// File is the path of the input file, as matched by the pattern.
	File string
	// Line is the 1-based line of the record in a JSONL or CSV file (where
	// the record starts), or 0 when lines do not apply (Parquet).
	Line int64
	// RowGroup is the 0-based row group of a Parquet file, or -1 when row
	// groups do not apply (JSONL, CSV).
	RowGroup int
	// Column names the field or column at fault, or is empty when the
	// record as a whole is at fault or the column is not known.
	Column string
	// Err is the decoding error.
	Err error

	failFast bool // Error says how to skip bad records
}

// Location says where the record is, as in
// `orders.csv line 17 column "amount"` or `orders.parquet row group 2 column amount`.
func (e *RecordError) Location() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, " line %d", e.Line)
	}
	if e.RowGroup >= 0 {
		fmt.Fprintf(&b, " row group %d", e.RowGroup)
	}
	if e.Column != "" {
		fmt.Fprintf(&b, " column %s", quoteIfNeeded(e.Column))
	}
	return b.String()
}

func (e *RecordError) Error() string {
	msg := "dataset: " + e.Location() + ": " + e.Err.Error()
	if e.failFast {
		msg += " (to skip bad records and go on, set ReadOptions.SkipBadRecords)"
	}
	return msg
}

func (e *RecordError) Unwrap() error { return e.Err }

// quoteIfNeeded quotes a column name that has spaces or is empty-looking,
// so a location stays unambiguous.
func quoteIfNeeded(s string) string {
	if strings.ContainsAny(s, " \t\"'") || strings.TrimSpace(s) != s {
		return strconv.Quote(s)
	}
	return s
}

// BadRecordReport counts and locates the records a file source skipped
// (ReadOptions.SkipBadRecords). It is per partition underneath: a
// partition computed twice (two actions, or a shuffle and a later action)
// is counted once, by the pass that read furthest. Safe for concurrent use.
type BadRecordReport struct {
	maxSamples int
	mu         sync.Mutex
	parts      []partTally // by partition (= input file)
}

// partTally is what the furthest pass over one partition found.
type partTally struct {
	progress int64 // records read (lines or rows) by that pass; -1: none yet
	count    int64
	samples  []RecordError
	logged   bool
}

func newBadRecordReport(parts, maxSamples int) *BadRecordReport {
	r := &BadRecordReport{maxSamples: maxSamples, parts: make([]partTally, parts)}
	for i := range r.parts {
		r.parts[i].progress = -1
	}
	return r
}

// Count returns the number of bad records skipped so far, each counted
// once however often its partition was computed. It is complete once an
// action has read every partition to its end.
func (r *BadRecordReport) Count() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var n int64
	for _, p := range r.parts {
		n += p.count
	}
	return n
}

// Samples returns the locations of the first bad records, by file then by
// line (or row group), at most ReadOptions.MaxSampleBadRecords of them. The
// caller owns the returned slice.
func (r *BadRecordReport) Samples() []RecordError {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []RecordError
	for _, p := range r.parts { // partitions are files in name order
		for _, s := range p.samples {
			if len(out) == r.maxSamples {
				return out
			}
			out = append(out, s)
		}
	}
	return out
}

// String summarises the report: "3 bad records skipped; first: a.jsonl line
// 2: ...; b.jsonl line 9: ...".
func (r *BadRecordReport) String() string {
	if r == nil {
		return "no bad-record report (not a file source)"
	}
	n := r.Count()
	if n == 0 {
		return "0 bad records skipped"
	}
	var b strings.Builder
	if n == 1 {
		b.WriteString("1 bad record skipped")
	} else {
		fmt.Fprintf(&b, "%d bad records skipped", n)
	}
	for i, s := range r.Samples() {
		if i == 0 {
			b.WriteString("; first: ")
		} else {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s: %v", s.Location(), s.Err)
	}
	return b.String()
}

// passTally collects the bad records of one pass over one partition.
type passTally struct {
	rep        *BadRecordReport
	part       int
	file       string
	skip       bool
	count      int64
	samples    []RecordError
	progress   int64 // records (lines, rows) read so far
	reachedEOF bool
}

func (r *BadRecordReport) newPass(part int, file string, skip bool) *passTally {
	return &passTally{rep: r, part: part, file: file, skip: skip}
}

// bad handles a bad record: in fail-fast mode it returns the error that
// fails the action; when skipping it counts n records (Parquet skips the
// rest of a row group at once) and returns nil.
func (t *passTally) bad(e RecordError, n int64) error {
	if !t.skip {
		e.failFast = true
		return &e
	}
	t.count += n
	if len(t.samples) < t.rep.maxSamples {
		t.samples = append(t.samples, e)
	}
	return nil
}

// commit records the pass in the report if it read at least as far as any
// earlier pass over the partition (the input is the same, so it has seen
// every bad record the earlier one saw), and warns once per partition.
func (t *passTally) commit(logger *slog.Logger, op string) {
	r := t.rep
	r.mu.Lock()
	p := &r.parts[t.part]
	if t.progress < p.progress {
		r.mu.Unlock()
		return
	}
	p.progress, p.count, p.samples = t.progress, t.count, t.samples
	warn := t.count > 0 && !p.logged
	if warn {
		p.logged = true
	}
	r.mu.Unlock()
	if warn {
		first := t.samples
		attrs := []any{"source", op, "file", t.file, "partition", t.part, "count", t.count}
		if len(first) > 0 {
			attrs = append(attrs, "first", first[0].Location()+": "+first[0].Err.Error())
		}
		if !t.reachedEOF {
			attrs = append(attrs, "complete", false) // the pass stopped early; a later one may find more
		}
		logger.Warn("dataset: skipped bad records", attrs...)
	}
}

// badRecordReports maps the lineage node of each file source to its report.
// A weak key lets a dataset and its node be collected; a cleanup then
// drops the entry. This keeps the report out of Dataset (whose fields
// belong to the core) without leaking an entry per source ever made.
var badRecordReports sync.Map // weak.Pointer[node] -> *BadRecordReport

func registerBadRecords(n *node, r *BadRecordReport) {
	key := weak.Make(n)
	badRecordReports.Store(key, r)
	runtime.AddCleanup(n, func(k weak.Pointer[node]) { badRecordReports.Delete(k) }, key)
}

// BadRecords returns the report of the records a file source (ReadJSONL,
// ReadCSV, ReadParquet) skipped, or nil for a dataset that is not a file
// source (a transformation of one included: ask the source). The report
// fills in as actions read the partitions.
func (d *Dataset[T]) BadRecords() *BadRecordReport {
	if r, ok := badRecordReports.Load(weak.Make(d.n)); ok {
		return r.(*BadRecordReport)
	}
	return nil
}
