package stream

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/metalog"
	"github.com/cairn-data/cairn/storage"
)

// This file reads a query's checkpoint location from the outside, without
// starting the query or taking its lease: for tools such as 'cairn
// checkpoint inspect', 'verify' and 'clean', which must decode the
// metadata object and the log entries exactly as Start does.

// ReadMetadata reads the metadata object of the streaming query whose
// checkpoint location is st. A location that holds no query gives an
// error matching storage.ErrNotFound; a damaged object an error wrapping
// the *storage.CorruptError that names it. It takes no lease and writes
// nothing.
func ReadMetadata(ctx context.Context, st storage.Storage) (Metadata, error) {
	payload, _, err := frame.GetBytes(ctx, st, MetadataObject, frame.KindQueryMeta, metadataFormat)
	if err != nil {
		return Metadata{}, fmt.Errorf("stream: read the query metadata in %s: %w", st.Location(), err)
	}
	var m Metadata
	if err := json.Unmarshal(payload, &m); err != nil {
		return Metadata{}, &storage.CorruptError{Object: MetadataObject, Offset: -1, Reason: "not valid JSON: " + err.Error()}
	}
	return m, nil
}

// ReadOffsetsEntry reads entry id of a query's offsets log and decodes it
// as Start does: JSON of an OffsetsEntry for batch id, with as many start
// as end offsets. A damaged entry gives an error wrapping the
// *storage.CorruptError that names its object.
func ReadOffsetsEntry(ctx context.Context, offsets *metalog.Log, id int64) (*OffsetsEntry, error) {
	data, err := offsets.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	var e OffsetsEntry
	reason := ""
	switch err := json.Unmarshal(data, &e); {
	case err != nil:
		reason = "not a valid offsets entry: " + err.Error()
	case e.Batch != id:
		reason = fmt.Sprintf("not a valid offsets entry: it is for batch %d", e.Batch)
	case len(e.Start) != len(e.End):
		reason = fmt.Sprintf("not a valid offsets entry: %d start offsets but %d end offsets", len(e.Start), len(e.End))
	default:
		return &e, nil
	}
	return nil, &storage.CorruptError{Object: offsets.Object(id), Offset: -1, Reason: reason}
}

// ReadCommitEntry reads entry id of a query's commits log and decodes it
// as Start does: JSON of a CommitEntry for batch id. A damaged entry gives
// an error wrapping the *storage.CorruptError that names its object.
func ReadCommitEntry(ctx context.Context, commits *metalog.Log, id int64) (*CommitEntry, error) {
	data, err := commits.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	var c CommitEntry
	reason := ""
	switch err := json.Unmarshal(data, &c); {
	case err != nil:
		reason = "not a valid commit entry: " + err.Error()
	case c.Batch != id:
		reason = fmt.Sprintf("not a valid commit entry: it is for batch %d", c.Batch)
	default:
		return &c, nil
	}
	return nil, &storage.CorruptError{Object: commits.Object(id), Offset: -1, Reason: reason}
}

// Stateful reports whether the operator keeps state: one store per
// partition, state/<ID>/<partition>, at version = the next batch's ID.
// WithWatermark's operator keeps none.
func (o OperatorInfo) Stateful() bool { return o.Kind != watermarkKind }
