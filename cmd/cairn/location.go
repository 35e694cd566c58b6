package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strconv"
	"strings"

	"github.com/cairn-data/cairn/internal/frame"
	"github.com/cairn-data/cairn/state"
	"github.com/cairn-data/cairn/storage"

	// The providers a checkpoint may use; state.Open finds them by name.
	_ "github.com/cairn-data/cairn/state/memstate"
)

// locationArgHelp is the message for a missing DIR argument.
const locationArgHelp = "missing DIR: give the checkpoint location, a directory path or a storage URL such as file:///abs/path"

// openLocation opens a checkpoint location for reading. A local directory
// must exist: storage.Open would create it, and a typo would then read as
// an empty location.
func openLocation(ctx context.Context, loc string) (storage.Storage, error) {
	s, err := storage.OpenExisting(ctx, loc)
	if errors.Is(err, storage.ErrNotFound) {
		return nil, fmt.Errorf("no checkpoint location at %s: the directory does not exist; check the path (the demo keeps its checkpoint in DIR/checkpoint when run with --dir DIR)", loc)
	}
	if err != nil {
		return nil, fmt.Errorf("open checkpoint location %s: %w", loc, err)
	}
	return s, nil
}

// parseStoreDir parses a store directory "state/<operator>/<partition>" or
// "state/<operator>/<partition>/<name>" into its StoreID. It accepts only
// the spelling StoreID.Dir produces.
func parseStoreDir(dir string) (state.StoreID, bool) {
	parts := strings.SplitN(dir, "/", 4)
	if len(parts) < 3 || parts[0] != "state" {
		return state.StoreID{}, false
	}
	op, err1 := strconv.ParseInt(parts[1], 10, 64)
	part, err2 := strconv.ParseInt(parts[2], 10, 32)
	if err1 != nil || err2 != nil {
		return state.StoreID{}, false
	}
	id := state.StoreID{Operator: op, Partition: int32(part)}
	if len(parts) == 4 {
		id.Name = parts[3]
	}
	if id.Dir() != dir {
		return state.StoreID{}, false
	}
	return id, true
}

// storeRef is a state store found in a listing by its metadata object.
type storeRef struct {
	id  state.StoreID
	dir string
}

// findStores returns the stores whose metadata object is in objs, in
// listing order, and the metadata objects at paths that are not a store
// directory.
func findStores(objs []storage.ObjectInfo) (stores []storeRef, misplaced []string) {
	for _, o := range objs {
		if path.Base(o.Name) != state.MetaObject || !strings.HasPrefix(o.Name, "state/") {
			continue
		}
		dir := path.Dir(o.Name)
		if id, ok := parseStoreDir(dir); ok {
			stores = append(stores, storeRef{id: id, dir: dir})
		} else {
			misplaced = append(misplaced, o.Name)
		}
	}
	return stores, misplaced
}

// storeOf returns the dir of the store that object belongs to directly (an
// object right inside the store's directory), if any.
func storeOf(object string, dirs map[string]bool) (string, bool) {
	dir := path.Dir(object)
	return dir, dirs[dir]
}

// nestedLocationHint returns a sentence for a location with no state store
// at its top but some below, as when DIR is given for DIR/checkpoint.
func nestedLocationHint(loc string, objs []storage.ObjectInfo) string {
	for _, o := range objs {
		if i := strings.Index(o.Name, "/state/"); i > 0 && path.Base(o.Name) == state.MetaObject {
			return fmt.Sprintf("%s holds no state store at its top, but %s/%s looks like a checkpoint location: did you mean that?",
				loc, strings.TrimSuffix(loc, "/"), o.Name[:i])
		}
	}
	return ""
}

// objectHead is what the header of an object says.
type objectHead struct {
	kind    frame.Kind
	version uint8
}

// errNotCairn marks an object that does not start like a cairn object.
var errNotCairn = errors.New("not a cairn object")

// peekObject reads the header of an object with frame.Peek. An object that
// does not start with the cairn magic gives an error matching errNotCairn;
// one that starts like a cairn object but is cut short in its header gives
// the *storage.CorruptError.
func peekObject(ctx context.Context, s storage.Storage, name string) (objectHead, error) {
	rc, err := s.Get(ctx, name)
	if err != nil {
		return objectHead{}, err
	}
	defer rc.Close()
	head := make([]byte, 12)
	n, err := io.ReadFull(rc, head)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		return objectHead{}, fmt.Errorf("read %s: %w", name, err)
	}
	head = head[:n]
	if m := min(n, len(frame.Magic)); n == 0 || !bytes.Equal(head[:m], []byte(frame.Magic)[:m]) {
		what := fmt.Sprintf("starts with %q", head[:min(n, 8)])
		if n == 0 {
			what = "it is empty"
		}
		return objectHead{}, fmt.Errorf("not checked: unknown to this build of cairn (%w: %s); no cairn run reads it. If you put it there, it can go; if not, a newer cairn or a state provider this build lacks may have written it: keep it, and verify with that cairn", errNotCairn, what)
	}
	kind, version, err := frame.Peek(bytes.NewReader(head), name)
	if err != nil {
		return objectHead{}, err
	}
	return objectHead{kind: kind, version: version}, nil
}

// knownKind reports whether this build knows the object kind.
func knownKind(k frame.Kind) bool {
	return k.Known()
}

// describeErr says what is wrong with an object, without repeating its
// name when the error is a *storage.CorruptError about that object.
func describeErr(object string, err error) string {
	var ce *storage.CorruptError
	if errors.As(err, &ce) && ce.Object == object && err == error(ce) {
		if ce.Offset >= 0 {
			return fmt.Sprintf("corrupt at byte %d: %s", ce.Offset, ce.Reason)
		}
		return "corrupt: " + ce.Reason
	}
	return err.Error()
}
