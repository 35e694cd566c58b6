// Package state is cairn's versioned key-value state: the keyed state of a
// stateful operator in one partition, one version per micro-batch, kept in
// checkpoint storage so a restarted job resumes with exactly the state of
// its last committed batch.
//
// A Provider serves one store, identified by a StoreID (operator,
// partition, optional name) inside a checkpoint location. It hands out a
// writable Store at version v, whose Commit creates version v+1, and
// read-only stores at any retained version. Providers register by name
// (Register); memstate registers "memstate" and pebblestate "pebble".
// Provider-specific settings travel in Options.Provider.
//
// Layout in the checkpoint location (as Spark's):
//
//	state/<operator>/<partition>/_meta           provider, schema and a random store UID, written at first use
//	state/<operator>/<partition>/<v>.delta       provider files (memstate, pebblestate: see their docs)
//	state/<operator>/<partition>/<name>/...      a named store of the same operator
//
// Invariants every provider keeps:
//
//  1. A store reads its own writes; no other reader sees them before Commit
//     returns; Abort discards them; a store whose GetStore context ends
//     before Commit is aborted.
//  2. Commit of version v+1 is durable when it returns nil, and a version
//     once committed never changes: a second Commit of v+1 (a replayed
//     batch) succeeds only if it writes exactly the same changes, and
//     otherwise fails with ErrConcurrentWriter.
//  3. Loading any retained version gives exactly the state committed at that
//     version; a version whose files were cleaned up, or that does not exist,
//     is a *VersionError naming the versions that are available, and a
//     damaged file is a *storage.CorruptError naming it.
//  4. The provider name and the key and value schemas are pinned at first
//     use: Open refuses a change with a *ConfigError naming old and new
//     values. (Spark silently keeps the old provider; cairn says so.)
//  5. Every object a provider writes records what it is, its name and the
//     store's UID (Meta.ObjectIdentity), inside its checked bytes, and a
//     load refuses one that is not what its name says (copied from another
//     version, partition or checkpoint location) with a
//     *storage.CorruptError naming it. (Spark's checkpoint format v2 names
//     state files with unique IDs for the same reason.) Stores created
//     before UIDs, and objects written before identities, are read as
//     before, with what checks they allow.
//
// Checking stored objects: a provider may implement the optional
// Verifier interface (memstate and pebblestate do). Tools reach a store's
// objects through it, never by file names of their own: Owns says which
// names in a store's directory are the provider's, VerifyStore reads and
// checks every one of them (pebblestate: each SST against the size and
// CRC32C its snapshot manifests record and the SHA-256 its name gives),
// and VerifierFor and Owners find the verifier of a store from its
// MetaObject or, when that is lost, from its files. 'cairn checkpoint
// verify' is built on it; an object no verifier owns is reported as not
// checked.
//
// Usage: open a provider, then per batch get the store at the previous
// version, write, commit.
//
//	p, err := state.Open(ctx, memstate.Name, storage, state.StoreID{Operator: 0, Partition: 3},
//		state.SchemaOf(state.StringCodec{}, state.Int64Codec{}), state.Options{})
//	...
//	defer p.Close()
//	v, _ := p.LatestVersion(ctx)
//	st, err := p.GetStore(taskCtx, v)
//	counts := state.NewTyped(st, state.StringCodec{}, state.Int64Codec{})
//	n, _, _ := counts.Get("user-1")
//	counts.Put("user-1", n+1)
//	v, err = counts.Commit(ctx)
package state
