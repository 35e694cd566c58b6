package s3

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cairn-data/cairn/storage"
)

// Defaults of Options.
const (
	DefaultEndpoint   = "s3.amazonaws.com"
	DefaultRegion     = "us-east-1"
	DefaultOpTimeout  = 60 * time.Second
	DefaultPartSize   = 16 << 20
	DefaultMaxRetries = 10

	// MinPartSize and MaxPartSize are S3's limits on the size of a part.
	MinPartSize = 5 << 20
	MaxPartSize = 5 << 30
)

// probePrefix names the object Open writes twice to check that the server
// honours conditional writes. The ".cairn-" prefix keeps it out of the
// object namespace: no valid name can collide with it and List hides it.
const probePrefix = ".cairn-probe-"

// tokenHeader is the user metadata an IfAbsent Put attaches: a random token
// by which Put recognises its own object when a retried request is refused
// because an earlier attempt of the same Put landed.
const (
	tokenKey    = "cairn-put"
	tokenHeader = "X-Amz-Meta-Cairn-Put"
)

// conflictRetries bounds how often a conditional write answered with 409
// ConditionalRequestConflict (another conditional write of the same key in
// flight) is retried before Put gives up with ErrExists.
const conflictRetries = 5

// smallBufferLimit is how far a Put grows its own buffer before it takes a
// whole part buffer from the pool: small records never cost a part.
const smallBufferLimit = 1 << 20

// Options configure Open. The zero value of every field but Bucket selects
// its default; the Spark/Hadoop S3A setting that does the same job is named
// where one exists.
type Options struct {
	// Bucket holds the objects. It must exist: Open does not create it.
	// Required. (The bucket of an s3a:// URL.)
	Bucket string
	// Prefix is prepended, with a "/", to every object name, so that many
	// checkpoint locations can share a bucket. Leading and trailing slashes
	// are ignored. Default "": the whole bucket. (The path of an s3a:// URL.)
	Prefix string
	// Endpoint is the server's host[:port], without a scheme. Default
	// "s3.amazonaws.com". (fs.s3a.endpoint)
	Endpoint string
	// Region signs requests. Default: the AWS_REGION environment variable,
	// then AWS_DEFAULT_REGION, then "us-east-1". A bucket in another AWS
	// region needs its region here. (fs.s3a.endpoint.region)
	Region string
	// PathStyle addresses the bucket in the path (http://endpoint/bucket/key)
	// instead of the host name (http://bucket.endpoint/key). Default false,
	// except that an endpoint given as an IP address or "localhost" always
	// uses path style, having no DNS name per bucket. MinIO, Ceph and most
	// self-hosted servers need true; so does a bucket name with dots over
	// HTTPS. (fs.s3a.path.style.access)
	PathStyle bool
	// Insecure talks plain HTTP instead of HTTPS. Default false.
	// (fs.s3a.connection.ssl.enabled=false)
	Insecure bool
	// Credentials sign requests. Default: the environment variables
	// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN, then
	// the shared credentials file (~/.aws/credentials or
	// AWS_SHARED_CREDENTIALS_FILE, profile AWS_PROFILE or "default"), then
	// the instance's IAM role (EC2, ECS, EKS); anonymous if none has any.
	// (fs.s3a.aws.credentials.provider)
	Credentials *credentials.Credentials
	// OpTimeout bounds each request to the server, its retries included: a
	// Put's single PUT or each part of a multipart upload, a Delete, each
	// page of a List; for Get, the wait for the response and then each Read
	// of the body (a reader that is slow to call Read is not timed). An
	// expired OpTimeout gives an error matching context.DeadlineExceeded.
	// Default 60 s. (fs.s3a.connection.request.timeout)
	OpTimeout time.Duration
	// PartSize is the size of each part of a multipart upload. A Put reads
	// up to PartSize bytes; an object that fits goes up in one PUT, a larger
	// one streams through a multipart upload holding one part in memory,
	// never the whole object. At least MinPartSize (5 MiB), at most
	// MaxPartSize; at most 10,000 parts, so PartSize also caps an object at
	// 10,000 x PartSize. Default 16 MiB. (fs.s3a.multipart.size)
	PartSize int64
	// MaxRetries is how many times a request that failed in a retryable way
	// (a network error; HTTP 408, 429, 499, 500, 502, 503, 504, 520; S3 codes
	// SlowDown, Throttling, InternalError, RequestTimeout and the like) is
	// retried, with exponential backoff and full jitter starting at 200 ms
	// and capped at 1 s per wait. Negative disables retries. Default 10.
	// (fs.s3a.retry.limit, fs.s3a.attempts.maximum)
	MaxRetries int
}

// withDefaults returns o with every zero field set to its default.
func (o Options) withDefaults() Options {
	o.Prefix = strings.Trim(o.Prefix, "/")
	if o.Endpoint == "" {
		o.Endpoint = DefaultEndpoint
	}
	if o.Region == "" {
		o.Region = defaultRegion()
	}
	if o.OpTimeout == 0 {
		o.OpTimeout = DefaultOpTimeout
	}
	if o.PartSize == 0 {
		o.PartSize = DefaultPartSize
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = DefaultMaxRetries
	}
	return o
}

func defaultRegion() string {
	for _, env := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if r := os.Getenv(env); r != "" {
			return r
		}
	}
	return DefaultRegion
}

// Validate reports the first problem with o, after defaults are applied:
// a missing or malformed bucket, a prefix that is not a valid object name,
// an endpoint with a scheme or path, a part size out of S3's range, a
// negative timeout.
func (o Options) Validate() error {
	o = o.withDefaults()
	if o.Bucket == "" {
		return errors.New("s3: no bucket; give one, as in s3://bucket/prefix")
	}
	if err := checkBucketName(o.Bucket); err != nil {
		return err
	}
	if o.Prefix != "" {
		if err := storage.ValidateName(o.Prefix); err != nil {
			return fmt.Errorf("s3: prefix %q: %w", o.Prefix, err)
		}
	}
	if strings.Contains(o.Endpoint, "://") || strings.ContainsAny(o.Endpoint, "/?#@") {
		return fmt.Errorf("s3: endpoint %q must be host[:port] only; for plain http set insecure=true (Options.Insecure)", o.Endpoint)
	}
	if o.PartSize < MinPartSize || o.PartSize > MaxPartSize {
		return fmt.Errorf("s3: part size %d is outside S3's range [%d, %d] (5 MiB to 5 GiB)", o.PartSize, MinPartSize, MaxPartSize)
	}
	if o.OpTimeout < 0 {
		return fmt.Errorf("s3: negative operation timeout %v", o.OpTimeout)
	}
	return nil
}

// checkBucketName applies S3's rules for bucket names.
func checkBucketName(b string) error {
	if len(b) < 3 || len(b) > 63 {
		return fmt.Errorf("s3: bucket name %q must be 3 to 63 characters long", b)
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return fmt.Errorf("s3: bucket name %q may hold only lower-case letters, digits, '-' and '.'", b)
		}
	}
	if !isAlnum(b[0]) || !isAlnum(b[len(b)-1]) {
		return fmt.Errorf("s3: bucket name %q must start and end with a letter or digit", b)
	}
	return nil
}

func isAlnum(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// ParseURL turns an s3:// URL into Options:
//
//	s3://bucket/prefix?endpoint=host:port&region=r&path-style=true&insecure=true
//	                  &op-timeout=60s&part-size=16MiB&max-retries=10
//
// Every query parameter is optional and sets the Options field of the same
// name; an unknown parameter is an error, so that a typo is not ignored.
// Credentials never come from the URL.
func ParseURL(location string) (Options, error) {
	u, err := url.Parse(location)
	if err != nil {
		return Options{}, fmt.Errorf("s3: parse %q: %w", location, err)
	}
	return optionsFromURL(u)
}

func optionsFromURL(u *url.URL) (Options, error) {
	if u.Scheme != "s3" {
		return Options{}, fmt.Errorf("s3: %q is not an s3:// URL", u.String())
	}
	if u.User != nil || u.Port() != "" {
		return Options{}, fmt.Errorf("s3: %q: the host of an s3:// URL is the bucket; give the server as ?endpoint=host:port and credentials in AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY", u.Redacted())
	}
	o := Options{Bucket: u.Host, Prefix: strings.Trim(u.Path, "/")}
	bad := func(key, val, want string) error {
		return fmt.Errorf("s3: %q: parameter %s=%q: want %s", u.Redacted(), key, val, want)
	}
	for key, vals := range u.Query() {
		val := vals[len(vals)-1]
		switch key {
		case "endpoint":
			o.Endpoint = val
		case "region":
			o.Region = val
		case "path-style", "insecure":
			b, err := strconv.ParseBool(val)
			if err != nil {
				return Options{}, bad(key, val, "true or false")
			}
			if key == "path-style" {
				o.PathStyle = b
			} else {
				o.Insecure = b
			}
		case "op-timeout":
			d, err := time.ParseDuration(val)
			if err != nil || d <= 0 {
				return Options{}, bad(key, val, "a positive duration such as 30s")
			}
			o.OpTimeout = d
		case "part-size":
			n, err := parseSize(val)
			if err != nil {
				return Options{}, bad(key, val, "a size such as 16MiB, 64M or 8388608")
			}
			o.PartSize = n
		case "max-retries":
			n, err := strconv.Atoi(val)
			if err != nil {
				return Options{}, bad(key, val, "an integer (negative: no retries)")
			}
			o.MaxRetries = n
		default:
			return Options{}, fmt.Errorf("s3: %q: unknown parameter %q (known: endpoint, region, path-style, insecure, op-timeout, part-size, max-retries)", u.Redacted(), key)
		}
	}
	if err := o.Validate(); err != nil {
		return Options{}, err
	}
	return o, nil
}

// parseSize reads a byte count with an optional binary suffix: 8388608,
// 8MiB, 8M, 512KiB, 1GiB.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	for _, suf := range []struct {
		s string
		m int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if strings.HasSuffix(s, suf.s) {
			s, mult = strings.TrimSuffix(s, suf.s), suf.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}

func init() {
	storage.Register("s3", func(ctx context.Context, u *url.URL) (storage.Storage, error) {
		o, err := optionsFromURL(u)
		if err != nil {
			return nil, err
		}
		return Open(ctx, o)
	})
}

// Storage is a storage.Storage in an S3 bucket, under a prefix. Safe for
// concurrent use.
type Storage struct {
	core      *minio.Core
	transport *http.Transport
	opts      Options
	location  string
	closed    atomic.Bool
	parts     sync.Pool // *[]byte of cap PartSize
}

var _ storage.Storage = (*Storage)(nil)

// Open connects to the bucket and checks, before it returns, that the
// server honours conditional writes: it creates a probe object
// "<prefix>/.cairn-probe-<random>" with If-None-Match: *, creates it again
// the same way, and refuses to open if the second create succeeds, since
// cairn's detection of a second writer rests on it. It deletes the probe.
// A missing bucket is an error that names it. Open needs permission to put
// and delete objects under the prefix.
func Open(ctx context.Context, opts Options) (*Storage, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	opts = opts.withDefaults()
	tr, err := minio.DefaultTransport(!opts.Insecure)
	if err != nil {
		return nil, fmt.Errorf("s3: open %s: %w", opts.Bucket, err)
	}
	// minio-go counts attempts; MaxRetries counts retries after the first.
	attempts := opts.MaxRetries + 1
	if opts.MaxRetries < 0 {
		attempts = 1
	}
	creds := opts.Credentials
	if creds == nil {
		creds = defaultCredentials(tr)
	}
	lookup := minio.BucketLookupDNS
	if opts.PathStyle || isLocalOrIP(opts.Endpoint) {
		lookup = minio.BucketLookupPath
	}
	core, err := minio.NewCore(opts.Endpoint, &minio.Options{
		Creds:        creds,
		Secure:       !opts.Insecure,
		Transport:    tr,
		Region:       opts.Region,
		BucketLookup: lookup,
		MaxRetries:   attempts,
	})
	if err != nil {
		return nil, fmt.Errorf("s3: open %s at %s: %w", opts.Bucket, opts.Endpoint, err)
	}
	s := &Storage{core: core, transport: tr, opts: opts, location: locationOf(opts)}
	if err := s.probe(ctx); err != nil {
		tr.CloseIdleConnections()
		return nil, err
	}
	return s, nil
}

// defaultCredentials is the chain documented on Options.Credentials. The
// IAM provider gets a short timeout: minio-go fetches credentials without
// the caller's deadline, and off the cloud the metadata address may never
// answer.
func defaultCredentials(tr http.RoundTripper) *credentials.Credentials {
	return credentials.NewChainCredentials([]credentials.Provider{
		&credentials.EnvAWS{},
		&credentials.FileAWSCredentials{},
		&credentials.IAM{Client: &http.Client{Transport: tr, Timeout: 10 * time.Second}},
	})
}

func isLocalOrIP(endpoint string) bool {
	host := endpoint
	if h, _, err := net.SplitHostPort(endpoint); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	return host == "localhost" || net.ParseIP(host) != nil
}

// locationOf is the URL that reopens the same storage (without
// credentials): default settings are left out.
func locationOf(o Options) string {
	u := url.URL{Scheme: "s3", Host: o.Bucket}
	if o.Prefix != "" {
		u.Path = "/" + o.Prefix
	}
	q := url.Values{}
	if o.Endpoint != DefaultEndpoint {
		q.Set("endpoint", o.Endpoint)
	}
	if o.Region != DefaultRegion {
		q.Set("region", o.Region)
	}
	if o.PathStyle {
		q.Set("path-style", "true")
	}
	if o.Insecure {
		q.Set("insecure", "true")
	}
	// Keep host:port readable: a colon needs no escaping in a query.
	u.RawQuery = strings.ReplaceAll(q.Encode(), "%3A", ":")
	return u.String()
}

// probe checks that the bucket exists and that the server refuses a second
// create of one key under If-None-Match: *.
func (s *Storage) probe(ctx context.Context) error {
	key := s.key(probePrefix + randomToken())
	cond := minio.PutObjectOptions{DisableMultipart: true}
	cond.SetMatchETagExcept("*")
	put := func() error {
		pctx, cancel := s.opContext(ctx)
		defer cancel()
		_, err := s.core.Client.PutObject(pctx, s.opts.Bucket, key, bytes.NewReader([]byte("cairn probe")), 11, cond)
		return s.fail(ctx, pctx, "open: write probe object", key, err)
	}
	if err := put(); err != nil {
		if isCode(err, "NotImplemented") {
			return fmt.Errorf("%w (the server may not support conditional writes, which cairn requires)", err)
		}
		return err
	}
	second := put()
	dctx, cancel := s.opContext(context.WithoutCancel(ctx))
	derr := s.core.Client.RemoveObject(dctx, s.opts.Bucket, key, minio.RemoveObjectOptions{})
	cancel()
	switch {
	case errors.Is(second, storage.ErrExists):
	case second == nil:
		return fmt.Errorf("s3: open %s: the server at %s ignored a conditional write: a second create of %s with If-None-Match: * succeeded. "+
			"cairn requires conditional writes (create-if-absent) to detect a second writer; this server does not honour them "+
			"(older MinIO releases, Ceph RGW and other S3-compatible stores may not). Use AWS S3 or a server that supports If-None-Match on PUT",
			s.location, s.opts.Endpoint, key)
	default:
		return fmt.Errorf("s3: open %s: the server at %s did not answer a conditional write (If-None-Match: *) as cairn requires: %w", s.location, s.opts.Endpoint, second)
	}
	if derr != nil {
		return s.fail(ctx, dctx, "open: delete probe object", key, derr)
	}
	return nil
}

// Location implements storage.Storage: the s3:// URL of the storage, which
// storage.Open accepts.
func (s *Storage) Location() string { return s.location }

// Close implements storage.Storage: later operations fail with
// storage.ErrClosed. It does not delete objects.
func (s *Storage) Close() error {
	s.closed.Store(true)
	s.transport.CloseIdleConnections()
	return nil
}

func (s *Storage) check(ctx context.Context) error {
	if s.closed.Load() {
		return fmt.Errorf("s3: %s: %w", s.location, storage.ErrClosed)
	}
	return ctx.Err()
}

func (s *Storage) key(name string) string {
	if s.opts.Prefix == "" {
		return name
	}
	return s.opts.Prefix + "/" + name
}

// Put implements storage.Storage. It reads up to PartSize bytes; an object
// that fits goes up in one PUT, a larger one through a multipart upload
// that holds one part in memory. Either way the object appears whole when
// the last request succeeds, and not at all if Put fails. IfAbsent sends
// If-None-Match: * with the PUT, or with the CompleteMultipartUpload, so
// the server decides atomically.
func (s *Storage) Put(ctx context.Context, name string, r io.Reader, opts storage.PutOptions) (err error) {
	if err := storage.ValidateName(name); err != nil {
		return err
	}
	if err := s.check(ctx); err != nil {
		return err
	}
	key := s.key(name)
	pr := &partReader{ctx: ctx, r: r, limit: int(s.opts.PartSize), pool: &s.parts}
	defer pr.release()
	part, last, err := pr.next()
	if err != nil {
		return fmt.Errorf("s3: put %s: read the object: %w", s.objURL(key), err)
	}
	var token string
	if opts.IfAbsent {
		token = randomToken()
	}
	if last {
		return s.putSingle(ctx, key, part, token)
	}
	return s.putMultipart(ctx, key, pr, part, token)
}

// putOptions are the options of a PUT or multipart upload; with a token,
// the object carries it and the write is conditional.
func putOptions(token string) (create, complete minio.PutObjectOptions) {
	create = minio.PutObjectOptions{ContentType: "application/octet-stream", DisableMultipart: true}
	if token != "" {
		create.UserMetadata = map[string]string{tokenKey: token}
		complete.SetMatchETagExcept("*")
	}
	return create, complete
}

func (s *Storage) putSingle(ctx context.Context, key string, data []byte, token string) error {
	opts, _ := putOptions(token)
	if token != "" {
		opts.SetMatchETagExcept("*")
	}
	return s.conditional(ctx, key, token, func() error {
		pctx, cancel := s.opContext(ctx)
		defer cancel()
		_, err := s.core.Client.PutObject(pctx, s.opts.Bucket, key, bytes.NewReader(data), int64(len(data)), opts)
		return s.fail(ctx, pctx, "put", key, err)
	})
}

// conditional runs a write and, for a conditional one (token != ""),
// retries it while the server answers 409 ConditionalRequestConflict, and
// turns a refusal into success when the object holds this Put's token: an
// earlier attempt of the same request landed but its answer was lost.
func (s *Storage) conditional(ctx context.Context, key, token string, write func() error) error {
	err := write()
	if token == "" {
		return err
	}
	for i := 0; i < conflictRetries && isCode(err, "ConditionalRequestConflict"); i++ {
		select {
		case <-time.After(time.Duration(50<<i) * time.Millisecond):
		case <-ctx.Done():
			return fmt.Errorf("s3: put %s: %w", s.objURL(key), ctx.Err())
		}
		err = write()
	}
	if isCode(err, "ConditionalRequestConflict") {
		return fmt.Errorf("s3: put %s: another writer kept creating the object: %w", s.objURL(key), storage.ErrExists)
	}
	if !errors.Is(err, storage.ErrExists) && !isCode(err, "NoSuchUpload") {
		return err
	}
	sctx, cancel := s.opContext(ctx)
	defer cancel()
	info, serr := s.core.Client.StatObject(sctx, s.opts.Bucket, key, minio.StatObjectOptions{})
	if serr == nil && info.Metadata.Get(tokenHeader) == token {
		return nil // ours
	}
	return err
}

func (s *Storage) putMultipart(ctx context.Context, key string, pr *partReader, part []byte, token string) (err error) {
	create, complete := putOptions(token)
	create.DisableMultipart = false
	ictx, cancel := s.opContext(ctx)
	uploadID, err := s.core.NewMultipartUpload(ictx, s.opts.Bucket, key, create)
	err = s.fail(ctx, ictx, "put: start multipart upload", key, err)
	cancel()
	if err != nil {
		return err
	}
	defer func() {
		if err == nil {
			return
		}
		// Abort even when ctx is cancelled, so that no parts linger.
		actx, cancel := s.opContext(context.WithoutCancel(ctx))
		defer cancel()
		if aerr := s.core.AbortMultipartUpload(actx, s.opts.Bucket, key, uploadID); aerr != nil && !isCode(aerr, "NoSuchUpload") {
			err = fmt.Errorf("%w; aborting multipart upload %s also failed, so its parts may remain until a lifecycle rule (AbortIncompleteMultipartUpload) removes them: %v", err, uploadID, aerr)
		}
	}()
	var parts []minio.CompletePart
	last := false
	for n := 1; ; n++ {
		if n > 10000 {
			return fmt.Errorf("s3: put %s: the object is larger than 10,000 parts of %d bytes; raise the part size (Options.PartSize, part-size=)", s.objURL(key), s.opts.PartSize)
		}
		pctx, cancel := s.opContext(ctx)
		p, err := s.core.PutObjectPart(pctx, s.opts.Bucket, key, uploadID, n, bytes.NewReader(part), int64(len(part)), minio.PutObjectPartOptions{})
		err = s.fail(ctx, pctx, fmt.Sprintf("put: upload part %d", n), key, err)
		cancel()
		if err != nil {
			return err
		}
		parts = append(parts, minio.CompletePart{
			PartNumber: n, ETag: p.ETag,
			ChecksumCRC32: p.ChecksumCRC32, ChecksumCRC32C: p.ChecksumCRC32C, ChecksumSHA1: p.ChecksumSHA1,
			ChecksumSHA256: p.ChecksumSHA256, ChecksumCRC64NVME: p.ChecksumCRC64NVME,
		})
		if last {
			break
		}
		// After a full part, next has read a byte ahead: the part is not empty.
		if part, last, err = pr.next(); err != nil {
			return fmt.Errorf("s3: put %s: read the object: %w", s.objURL(key), err)
		}
	}
	return s.conditional(ctx, key, token, func() error {
		cctx, cancel := s.opContext(ctx)
		defer cancel()
		_, err := s.core.CompleteMultipartUpload(cctx, s.opts.Bucket, key, uploadID, parts, complete)
		return s.fail(ctx, cctx, "put: complete multipart upload", key, err)
	})
}

// Get implements storage.Storage. The reader streams the object; OpTimeout
// bounds the wait for the response and each Read. The caller must Close it.
func (s *Storage) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	if err := storage.ValidateName(name); err != nil {
		return nil, err
	}
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	key := s.key(name)
	w := s.watchdog(ctx)
	rc, _, _, err := s.core.GetObject(w.ctx, s.opts.Bucket, key, minio.GetObjectOptions{})
	w.timer.Stop()
	if err != nil {
		w.cancel(nil)
		return nil, s.fail(ctx, w.ctx, "get", key, err)
	}
	return &body{s: s, key: key, parent: ctx, rc: rc, w: w}, nil
}

// body is the reader Get returns: each Read is timed by the watchdog.
type body struct {
	s      *Storage
	key    string
	parent context.Context
	rc     io.ReadCloser
	w      watchdog
}

func (b *body) Read(p []byte) (int, error) {
	b.w.timer.Reset(b.s.opts.OpTimeout)
	n, err := b.rc.Read(p)
	b.w.timer.Stop()
	if err != nil && err != io.EOF {
		err = b.s.fail(b.parent, b.w.ctx, "get: read", b.key, err)
	}
	return n, err
}

func (b *body) Close() error {
	b.w.timer.Stop()
	b.w.cancel(nil)
	return b.rc.Close()
}

// List implements storage.Storage. It follows the server's pages (1,000
// keys each on S3) to the end; OpTimeout bounds each page. Keys under the
// prefix that are not valid object names (a console's "dir/" marker, a
// leftover probe) are skipped.
func (s *Storage) List(ctx context.Context, prefix string) ([]storage.ObjectInfo, error) {
	if err := storage.ValidatePrefix(prefix); err != nil {
		return nil, err
	}
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	base := ""
	if s.opts.Prefix != "" {
		base = s.opts.Prefix + "/"
	}
	w := s.watchdog(ctx)
	defer w.cancel(nil)
	defer w.timer.Stop()
	fetchOwner := false
	var out []storage.ObjectInfo
	for obj := range s.core.Client.ListObjectsIter(w.ctx, s.opts.Bucket, minio.ListObjectsOptions{
		Prefix: base + prefix, Recursive: true, FetchOwner: &fetchOwner,
	}) {
		if obj.Err != nil {
			return nil, s.fail(ctx, w.ctx, fmt.Sprintf("list %q", prefix), base, obj.Err)
		}
		w.timer.Reset(s.opts.OpTimeout)
		name := strings.TrimPrefix(obj.Key, base)
		if storage.ValidateName(name) != nil {
			continue
		}
		out = append(out, storage.ObjectInfo{Name: name, Size: obj.Size})
	}
	// minio-go ends the listing quietly when its context ends between
	// pages: a cut-short listing must be an error, never a short answer.
	if w.ctx.Err() != nil {
		return nil, s.fail(ctx, w.ctx, fmt.Sprintf("list %q", prefix), base, w.ctx.Err())
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// Delete implements storage.Storage. Deleting a missing object is not an
// error.
func (s *Storage) Delete(ctx context.Context, name string) error {
	if err := storage.ValidateName(name); err != nil {
		return err
	}
	if err := s.check(ctx); err != nil {
		return err
	}
	key := s.key(name)
	dctx, cancel := s.opContext(ctx)
	defer cancel()
	err := s.core.Client.RemoveObject(dctx, s.opts.Bucket, key, minio.RemoveObjectOptions{})
	if err = s.fail(ctx, dctx, "delete", key, err); errors.Is(err, storage.ErrNotFound) {
		return nil
	}
	return err
}

// timeoutError is the cause of a context that OpTimeout ended. It matches
// context.DeadlineExceeded.
type timeoutError struct {
	endpoint string
	d        time.Duration
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("no answer from %s within %v (the operation timeout); check that the endpoint is reachable, or raise the timeout (Options.OpTimeout, op-timeout=)", e.endpoint, e.d)
}

func (e *timeoutError) Unwrap() error { return context.DeadlineExceeded }

// opContext bounds one request by OpTimeout.
func (s *Storage) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeoutCause(ctx, s.opts.OpTimeout, &timeoutError{s.opts.Endpoint, s.opts.OpTimeout})
}

// watchdog is an OpTimeout that is re-armed while a request makes
// progress: it cancels ctx when the timer fires.
type watchdog struct {
	ctx    context.Context
	cancel context.CancelCauseFunc
	timer  *time.Timer
}

func (s *Storage) watchdog(ctx context.Context) watchdog {
	wctx, cancel := context.WithCancelCause(ctx)
	cause := &timeoutError{s.opts.Endpoint, s.opts.OpTimeout}
	return watchdog{wctx, cancel, time.AfterFunc(s.opts.OpTimeout, func() { cancel(cause) })}
}

// fail turns an error of a request made under opCtx (derived from ctx)
// into cairn's terms: it names the operation and the object, maps S3 codes
// to storage's sentinel errors, says what to do about a missing bucket or
// refused credentials, and reports an expired OpTimeout as such. nil stays
// nil.
func (s *Storage) fail(ctx, opCtx context.Context, op, key string, err error) error {
	if err == nil {
		return nil
	}
	where := s.objURL(key)
	var te *timeoutError
	if ctx.Err() == nil && errors.As(context.Cause(opCtx), &te) && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled)) {
		return fmt.Errorf("s3: %s %s: %w", op, where, te)
	}
	var resp minio.ErrorResponse
	if !errors.As(err, &resp) {
		return fmt.Errorf("s3: %s %s: %w", op, where, err)
	}
	switch {
	case resp.Code == "NoSuchKey" || resp.Code == "XMinioObjectExistsAsDirectory" || (resp.Code == "XMinioParentIsObject" && op == "get"):
		return fmt.Errorf("s3: %s %s: %w", op, where, storage.ErrNotFound)
	case resp.Code == "PreconditionFailed" || resp.StatusCode == http.StatusPreconditionFailed:
		return fmt.Errorf("s3: %s %s: %w", op, where, storage.ErrExists)
	case resp.Code == "NoSuchBucket":
		return fmt.Errorf("s3: %s %s: bucket %q does not exist at %s; create it first (aws s3 mb s3://%s, or mc mb ALIAS/%s): %w",
			op, where, s.opts.Bucket, s.opts.Endpoint, s.opts.Bucket, s.opts.Bucket, err)
	case resp.Code == "AccessDenied" || resp.Code == "InvalidAccessKeyId" || resp.Code == "SignatureDoesNotMatch" || resp.Code == "ExpiredToken" || resp.Code == "InvalidToken":
		return fmt.Errorf("s3: %s %s: the server refused the credentials (%s); set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), and check that they may read, write and delete under the prefix: %w",
			op, where, resp.Code, err)
	case resp.Code == "AuthorizationHeaderMalformed" || resp.Code == "PermanentRedirect" || resp.Code == "IllegalLocationConstraintException":
		region := resp.Region
		if region == "" {
			region = "the bucket's region"
		}
		return fmt.Errorf("s3: %s %s: the bucket is not in region %s; set region=%s (Options.Region, AWS_REGION): %w", op, where, s.opts.Region, region, err)
	}
	return fmt.Errorf("s3: %s %s: %w", op, where, err)
}

// objURL names an object for messages.
func (s *Storage) objURL(key string) string {
	return "s3://" + s.opts.Bucket + "/" + key
}

// isCode reports whether err is an S3 error with the given code.
func isCode(err error, code string) bool {
	var resp minio.ErrorResponse
	return errors.As(err, &resp) && resp.Code == code
}

func randomToken() string {
	var b [16]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// partReader cuts a stream into parts of at most limit bytes. It reads one
// byte past a full part to learn whether the part is the last, so a stream
// of exactly limit bytes still goes up in one PUT.
type partReader struct {
	ctx     context.Context
	r       io.Reader
	limit   int
	pool    *sync.Pool
	buf     []byte
	pooled  *[]byte
	pending []byte // at most one byte read past the previous part
	eof     bool
}

// next returns the next part, valid until the following call, and whether
// the stream ends with it.
func (p *partReader) next() ([]byte, bool, error) {
	if p.eof {
		return nil, true, nil
	}
	if p.buf == nil {
		p.buf = make([]byte, 0, min(64<<10, p.limit))
	}
	p.buf = append(p.buf[:0], p.pending...)
	p.pending = p.pending[:0]
	for len(p.buf) < p.limit {
		if len(p.buf) == cap(p.buf) {
			p.grow()
		}
		if err := p.ctx.Err(); err != nil {
			return nil, false, err
		}
		n, err := p.r.Read(p.buf[len(p.buf):cap(p.buf)])
		p.buf = p.buf[:len(p.buf)+n]
		if err == io.EOF {
			p.eof = true
			return p.buf, true, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
	var one [1]byte
	for {
		if err := p.ctx.Err(); err != nil {
			return nil, false, err
		}
		n, err := p.r.Read(one[:])
		if n == 1 {
			p.pending = append(p.pending, one[0])
			return p.buf, false, nil
		}
		if err == io.EOF {
			p.eof = true
			return p.buf, true, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
}

// grow doubles the buffer up to smallBufferLimit, then switches to a
// pooled buffer of a whole part.
func (p *partReader) grow() {
	if c := 2 * cap(p.buf); c <= smallBufferLimit && c < p.limit {
		p.buf = append(make([]byte, 0, c), p.buf...)
		return
	}
	bp, _ := p.pool.Get().(*[]byte)
	if bp == nil || cap(*bp) != p.limit {
		b := make([]byte, 0, p.limit)
		bp = &b
	}
	p.buf = append((*bp)[:0], p.buf...)
	p.pooled = bp
}

// release returns a pooled buffer.
func (p *partReader) release() {
	if p.pooled != nil {
		*p.pooled = (*p.pooled)[:0]
		p.pool.Put(p.pooled)
		p.pooled, p.buf = nil, nil
	}
}
