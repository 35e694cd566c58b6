package s3_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cairn-data/cairn/internal/s3test/miniotest"
	"github.com/cairn-data/cairn/storage"
	"github.com/cairn-data/cairn/storage/s3"
	"github.com/cairn-data/cairn/storage/storagetest"
)

func TestMain(m *testing.M) { miniotest.Main(m) }

// options returns Options for a bucket and prefix on srv, reached through
// endpoint (srv's own, or a proxy's).
func options(srv *miniotest.Server, endpoint, bucket, prefix string) s3.Options {
	return s3.Options{
		Bucket:      bucket,
		Prefix:      prefix,
		Endpoint:    endpoint,
		Region:      "us-east-1",
		Insecure:    true,
		PathStyle:   true,
		Credentials: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""),
	}
}

func open(t testing.TB, o s3.Options) *s3.Storage {
	t.Helper()
	st, err := s3.Open(context.Background(), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestConformance(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	var n atomic.Int64
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		// A fresh prefix per subtest, one level deeper than the others, so
		// that a backend leaking outside its prefix would be seen.
		return open(t, options(srv, srv.Endpoint, bucket, fmt.Sprintf("ckpt/%d", n.Add(1))))
	})
}

func TestConformanceWholeBucket(t *testing.T) {
	srv := miniotest.Start(t)
	storagetest.Run(t, func(t *testing.T) storage.Storage {
		return open(t, options(srv, srv.Endpoint, srv.NewBucket(t), ""))
	})
}

func TestParseURL(t *testing.T) {
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	tests := []struct {
		url  string
		want s3.Options // Credentials are never parsed
		err  string     // substring of the error, "" for none
	}{
		{url: "s3://bucket", want: s3.Options{Bucket: "bucket"}},
		{url: "s3://bucket/", want: s3.Options{Bucket: "bucket"}},
		{url: "s3://my-bucket/a/b/", want: s3.Options{Bucket: "my-bucket", Prefix: "a/b"}},
		{
			url:  "s3://b.c/p?endpoint=127.0.0.1:9000&region=eu-west-1&path-style=true&insecure=true&op-timeout=5s&part-size=8MiB&max-retries=-1",
			want: s3.Options{Bucket: "b.c", Prefix: "p", Endpoint: "127.0.0.1:9000", Region: "eu-west-1", PathStyle: true, Insecure: true, OpTimeout: 5 * time.Second, PartSize: 8 << 20, MaxRetries: -1},
		},
		{url: "s3://bkt?part-size=64M", want: s3.Options{Bucket: "bkt", PartSize: 64 << 20}},
		{url: "s3://bkt?part-size=5242880", want: s3.Options{Bucket: "bkt", PartSize: 5 << 20}},
		{url: "s3://bkt?path-style=false&insecure=0", want: s3.Options{Bucket: "bkt"}},
		{url: "s3:///prefix", err: "no bucket"},
		{url: "s3://Bucket", err: "lower-case"},
		{url: "s3://ab", err: "3 to 63"},
		{url: "s3://-bucket", err: "start and end"},
		{url: "s3://bkt:9000/p", err: "?endpoint=host:port"},
		{url: "s3://key:secret@bkt/p", err: "credentials in AWS_ACCESS_KEY_ID"},
		{url: "s3://bkt/a/../b", err: "invalid object name"},
		{url: "s3://bkt/a//b", err: "invalid object name"},
		{url: "s3://bkt/.cairn-x", err: "reserved"},
		{url: "s3://bkt?endpoint=http://localhost:9000", err: "insecure=true"},
		{url: "s3://bkt?part-size=4MiB", err: "outside S3's range"},
		{url: "s3://bkt?part-size=lots", err: "part-size"},
		{url: "s3://bkt?insecure=maybe", err: "true or false"},
		{url: "s3://bkt?op-timeout=-1s", err: "positive duration"},
		{url: "s3://bkt?max-retries=x", err: "max-retries"},
		{url: "s3://bkt?endpont=localhost", err: `unknown parameter "endpont"`},
		{url: "file:///tmp/x", err: "not an s3:// URL"},
	}
	for _, tt := range tests {
		got, err := s3.ParseURL(tt.url)
		switch {
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParseURL(%q): err = %v, want one containing %q", tt.url, err, tt.err)
		case tt.err == "" && err != nil:
			t.Errorf("ParseURL(%q): %v", tt.url, err)
		case tt.err == "" && fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tt.want):
			t.Errorf("ParseURL(%q)\n got %+v\nwant %+v", tt.url, got, tt.want)
		}
	}
}

// The default region comes from the environment.
func TestRegionFromEnvironment(t *testing.T) {
	srv := miniotest.Start(t)
	o := options(srv, srv.Endpoint, srv.NewBucket(t), "")
	o.Region = ""
	t.Setenv("AWS_REGION", "eu-north-1")
	if loc := open(t, o).Location(); !strings.Contains(loc, "region=eu-north-1") {
		t.Errorf("with AWS_REGION=eu-north-1, Location = %s, want region=eu-north-1", loc)
	}
	t.Setenv("AWS_REGION", "")
	t.Setenv("AWS_DEFAULT_REGION", "")
	if loc := open(t, o).Location(); strings.Contains(loc, "region=") {
		t.Errorf("without AWS_REGION, Location = %s, want the default region (not shown)", loc)
	}
}

// storage.Open reaches the backend through the registry, with credentials
// from the environment, and Location reopens the same storage.
func TestOpenByURL(t *testing.T) {
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	for _, kv := range srv.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	ctx := context.Background()
	st, err := storage.Open(ctx, srv.URL(bucket, "loc/ckpt"))
	if err != nil {
		t.Fatalf("storage.Open(%s): %v", srv.URL(bucket, "loc/ckpt"), err)
	}
	defer st.Close()
	if err := storage.PutBytes(ctx, st, "offsets/0", []byte("zero"), storage.PutOptions{IfAbsent: true}); err != nil {
		t.Fatal(err)
	}
	again, err := storage.Open(ctx, st.Location())
	if err != nil {
		t.Fatalf("reopen %s: %v", st.Location(), err)
	}
	defer again.Close()
	if got, err := storage.GetBytes(ctx, again, "offsets/0"); err != nil || string(got) != "zero" {
		t.Fatalf("through Location %s: Get = %q, %v; want zero", st.Location(), got, err)
	}
	obj, err := srv.Client().StatObject(ctx, bucket, "loc/ckpt/offsets/0", minio.StatObjectOptions{})
	if err != nil || obj.Size != 4 {
		t.Fatalf("the object is not at key loc/ckpt/offsets/0: %+v, %v", obj, err)
	}
}

func TestMissingBucket(t *testing.T) {
	srv := miniotest.Start(t)
	t.Parallel()
	_, err := s3.Open(context.Background(), options(srv, srv.Endpoint, "no-such-bucket", "p"))
	if err == nil || !strings.Contains(err.Error(), `bucket "no-such-bucket" does not exist`) || !strings.Contains(err.Error(), "create it") {
		t.Fatalf("Open of a missing bucket: err = %v, want one naming the bucket and saying to create it", err)
	}
}

func TestWrongCredentials(t *testing.T) {
	srv := miniotest.Start(t)
	t.Parallel()
	o := options(srv, srv.Endpoint, srv.NewBucket(t), "")
	o.Credentials = credentials.NewStaticV4(srv.AccessKey, "wrong-secret", "")
	_, err := s3.Open(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "refused the credentials") {
		t.Fatalf("Open with a wrong secret: err = %v, want a credentials error", err)
	}
}

// proxy is a reverse proxy in front of a server; intercept may answer a
// request itself (returning true) or let it through.
type proxy struct {
	endpoint string
	rp       *httputil.ReverseProxy
	requests atomic.Int64
}

func newProxy(t testing.TB, target string, intercept func(p *proxy, w http.ResponseWriter, r *http.Request) bool) *proxy {
	t.Helper()
	p := &proxy{rp: httputil.NewSingleHostReverseProxy(&url.URL{Scheme: "http", Host: target})}
	p.rp.ErrorLog = nil
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.requests.Add(1)
		if intercept != nil && intercept(p, w, r) {
			return
		}
		p.rp.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	p.endpoint = hs.Listener.Addr().String()
	return p
}

// makePublic lets anonymous requests read and write the bucket, so that a
// proxy may change headers that a signature would cover.
func makePublic(t *testing.T, srv *miniotest.Server, bucket string) {
	t.Helper()
	policy := fmt.Sprintf(`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":["*"]},`+
		`"Action":["s3:GetObject","s3:PutObject","s3:DeleteObject","s3:ListBucket","s3:GetBucketLocation"],`+
		`"Resource":["arn:aws:s3:::%[1]s","arn:aws:s3:::%[1]s/*"]}]}`, bucket)
	if err := srv.Client().SetBucketPolicy(context.Background(), bucket, policy); err != nil {
		t.Fatalf("set bucket policy: %v", err)
	}
}

// A server that ignores If-None-Match (here: MinIO behind a proxy that
// strips it) is refused at Open; the same set-up without the stripping
// opens, so the refusal is due to the ignored condition.
func TestRefusesServerWithoutConditionalWrites(t *testing.T) {
	srv := miniotest.Start(t)
	t.Parallel()
	ctx := context.Background()
	bucket := srv.NewBucket(t)
	makePublic(t, srv, bucket)
	var stripped atomic.Int64
	strip := newProxy(t, srv.Endpoint, func(p *proxy, w http.ResponseWriter, r *http.Request) bool {
		if r.Header.Get("If-None-Match") != "" {
			stripped.Add(1)
			r.Header.Del("If-None-Match")
		}
		return false
	})
	pass := newProxy(t, srv.Endpoint, nil)
	anonymous := func(endpoint string) s3.Options {
		o := options(srv, endpoint, bucket, "ckpt")
		o.Credentials = credentials.NewStaticV4("", "", "")
		return o
	}

	st, err := s3.Open(ctx, anonymous(pass.endpoint))
	if err != nil {
		t.Fatalf("Open through a faithful proxy: %v", err)
	}
	st.Close()

	_, err = s3.Open(ctx, anonymous(strip.endpoint))
	if err == nil {
		t.Fatal("Open succeeded against a server that ignores If-None-Match")
	}
	for _, want := range []string{"ignored a conditional write", strip.endpoint, "requires conditional writes"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	if stripped.Load() != 2 {
		t.Errorf("the proxy stripped If-None-Match from %d requests, want the probe's 2", stripped.Load())
	}
	// Both Opens removed their probe objects.
	for obj := range srv.Client().ListObjectsIter(ctx, bucket, minio.ListObjectsOptions{Recursive: true}) {
		t.Errorf("left behind: %s (%v)", obj.Key, obj.Err)
	}
}

// List follows pagination past S3's 1,000 keys per page.
func TestListMoreThanOnePage(t *testing.T) {
	srv := miniotest.Start(t)
	t.Parallel()
	ctx := context.Background()
	st := open(t, options(srv, srv.Endpoint, srv.NewBucket(t), "many"))
	const n = 1234
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("part-%05d", i)
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 16)
	for i, name := range want {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs <- storage.PutBytes(ctx, st, name, bytes.Repeat([]byte("x"), i%7), storage.PutOptions{})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// An object outside the listed prefix, sorting between the others.
	if err := storage.PutBytes(ctx, st, "part-0", []byte("y"), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}
	got, err := st.List(ctx, "part-0")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n+1 {
		t.Fatalf("List returned %d objects, want %d", len(got), n+1)
	}
	if got[0].Name != "part-0" {
		t.Fatalf("first = %v, want part-0", got[0])
	}
	for i, o := range got[1:] {
		if o.Name != want[i] || o.Size != int64(i%7) {
			t.Fatalf("List[%d] = %+v, want {%s %d}", i+1, o, want[i], i%7)
		}
	}
}

// stream writes size pseudo-random bytes from seed to w in small writes,
// and returns their SHA-256; it holds no more than one small buffer.
func stream(w io.Writer, size int64, seed uint64) ([32]byte, error) {
	rng := rand.New(rand.NewPCG(seed, seed))
	h := sha256.New()
	buf := make([]byte, 32<<10)
	for size > 0 {
		n := min(int64(len(buf)), size)
		for i := 0; i < int(n); i += 8 {
			v := rng.Uint64()
			for j := 0; j < 8 && i+j < int(n); j++ {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		h.Write(buf[:n])
		if _, err := w.Write(buf[:n]); err != nil {
			return [32]byte{}, err
		}
		size -= n
	}
	return [32]byte(h.Sum(nil)), nil
}

// heapDuring runs f and returns the live heap before it and the largest
// heap seen while it ran, sampled every millisecond.
func heapDuring(f func()) (baseline, peak uint64) {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	read := func() uint64 { metrics.Read(sample); return sample[0].Value.Uint64() }
	runtime.GC()
	baseline = read()
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			peak = max(peak, read())
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	f()
	close(stop)
	<-done
	return baseline, peak
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

func sumOf(t *testing.T, st storage.Storage, name string) ([32]byte, int64) {
	t.Helper()
	rc, err := st.Get(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	h := sha256.New()
	n, err := io.Copy(h, rc)
	if err != nil {
		t.Fatalf("read %s: %v", name, err)
	}
	return [32]byte(h.Sum(nil)), n
}

// A 40 MiB object streams through 8 parts of 5 MiB, round-trips, and the
// heap stays far below the object's size during the Put: one part, not the
// whole. Not parallel, so that the heap is this test's own.
func TestLargeObjectStreamsThroughParts(t *testing.T) {
	srv := miniotest.Start(t)
	ctx := context.Background()
	bucket := srv.NewBucket(t)
	o := options(srv, srv.Endpoint, bucket, "big")
	o.PartSize = 5 << 20
	st := open(t, o)
	const size = 40 << 20

	var sum [32]byte
	baseline, peak := heapDuring(func() {
		err := storage.PutStream(ctx, st, "obj", storage.PutOptions{}, func(w io.Writer) (err error) {
			sum, err = stream(w, size, 7)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	})
	t.Logf("Put of %d MiB with %d MiB parts: heap %.1f MiB before, at most %.1f MiB during", size>>20, o.PartSize>>20, mib(baseline), mib(peak))
	if limit := baseline + 4*uint64(o.PartSize); peak > limit {
		t.Errorf("Put of a %d MiB object took the heap to %.1f MiB (from %.1f MiB); with 5 MiB parts it should hold about one part (limit %.1f MiB)",
			size>>20, mib(peak), mib(baseline), mib(limit))
	}
	if got, n := sumOf(t, st, "obj"); got != sum || n != size {
		t.Fatalf("read back %d bytes with a different digest, want %d bytes", n, size)
	}
	info, err := srv.Client().StatObject(ctx, bucket, "big/obj", minio.StatObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(info.ETag, "-8") {
		t.Errorf("ETag %q: want a multipart ETag of 8 parts (suffix -8)", info.ETag)
	}
}

// The edges of the single-PUT/multipart split: exactly one part goes up in
// one PUT, one byte more in two parts; both round-trip.
func TestPartBoundaries(t *testing.T) {
	srv := miniotest.Start(t)
	t.Parallel()
	ctx := context.Background()
	bucket := srv.NewBucket(t)
	o := options(srv, srv.Endpoint, bucket, "")
	o.PartSize = 5 << 20
	st := open(t, o)
	for _, tc := range []struct {
		size  int64
		parts string // ETag suffix: "" for a single PUT
	}{{5 << 20, ""}, {5<<20 + 1, "-2"}, {10 << 20, "-2"}, {10<<20 + 1, "-3"}} {
		name := fmt.Sprintf("obj-%d", tc.size)
		var sum [32]byte
		err := storage.PutStream(ctx, st, name, storage.PutOptions{}, func(w io.Writer) (err error) {
			sum, err = stream(w, tc.size, uint64(tc.size))
			return err
		})
		if err != nil {
			t.Fatalf("%d bytes: %v", tc.size, err)
		}
		if got, n := sumOf(t, st, name); got != sum || n != tc.size {
			t.Errorf("%d bytes: read back %d bytes with digest match %v", tc.size, n, got == sum)
		}
		info, err := srv.Client().StatObject(ctx, bucket, name, minio.StatObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if i := strings.LastIndexByte(info.ETag, '-'); (tc.parts == "" && i >= 0) || (tc.parts != "" && !strings.HasSuffix(info.ETag, tc.parts)) {
			t.Errorf("%d bytes: ETag %q, want parts suffix %q", tc.size, info.ETag, tc.parts)
		}
	}
}

// IfAbsent holds for objects that go up in parts: the condition is checked
// at CompleteMultipartUpload, of concurrent writers one wins, and the
// losers' uploads are aborted.
func TestIfAbsentMultipart(t *testing.T) {
	srv := miniotest.Start(t)
	t.Parallel()
	ctx := context.Background()
	bucket := srv.NewBucket(t)
	o := options(srv, srv.Endpoint, bucket, "")
	o.PartSize = 5 << 20
	st := open(t, o)
	data := func(i int) []byte { return bytes.Repeat([]byte{byte('a' + i)}, 6<<20) }

	if err := storage.PutBytes(ctx, st, "one", data(0), storage.PutOptions{IfAbsent: true}); err != nil {
		t.Fatal(err)
	}
	err := storage.PutBytes(ctx, st, "one", data(1), storage.PutOptions{IfAbsent: true})
	if !errors.Is(err, storage.ErrExists) {
		t.Fatalf("second multipart IfAbsent Put: err = %v, want ErrExists", err)
	}
	if got, _ := storage.GetBytes(ctx, st, "one"); !bytes.Equal(got, data(0)) {
		t.Fatal("the refused Put changed the object")
	}

	const writers = 4
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = storage.PutBytes(ctx, st, "race", data(i), storage.PutOptions{IfAbsent: true})
		}()
	}
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("writers %d and %d both created race", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, storage.ErrExists):
			t.Fatalf("writer %d: %v", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer created race")
	}
	if got, _ := storage.GetBytes(ctx, st, "race"); !bytes.Equal(got, data(winner)) {
		t.Fatalf("race holds another writer's bytes than the winner's (%d)", winner)
	}
	for u := range srv.Client().ListIncompleteUploads(ctx, bucket, "", true) {
		t.Errorf("multipart upload left behind: %+v", u)
	}
}

// A failing reader after the first part aborts the multipart upload.
func TestFailedReaderAbortsMultipart(t *testing.T) {
	srv := miniotest.Start(t)
	t.Parallel()
	ctx := context.Background()
	bucket := srv.NewBucket(t)
	o := options(srv, srv.Endpoint, bucket, "")
	o.PartSize = 5 << 20
	st := open(t, o)
	boom := errors.New("encoder failed")
	err := storage.PutStream(ctx, st, "partial", storage.PutOptions{}, func(w io.Writer) error {
		if _, err := w.Write(make([]byte, 12<<20)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Put: err = %v, want %v", err, boom)
	}
	if _, err := st.Get(ctx, "partial"); !errors.Is(err, storage.ErrNotFound) {
		t.Fatalf("Get after a failed multipart Put: err = %v, want ErrNotFound", err)
	}
	for u := range srv.Client().ListIncompleteUploads(ctx, bucket, "", true) {
		t.Errorf("multipart upload left behind: %+v", u)
	}
}

// An endpoint that accepts connections and never answers makes Open fail
// within about OpTimeout, with an error that says so.
func TestTimeoutSilentEndpoint(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c) // hold it open, say nothing
		}
	}()
	o := s3.Options{Bucket: "bkt", Endpoint: l.Addr().String(), Insecure: true, OpTimeout: 300 * time.Millisecond,
		Credentials: credentials.NewStaticV4("k", "secret", "")}
	start := time.Now()
	_, err = s3.Open(context.Background(), o)
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "within 300ms") {
		t.Fatalf("Open of a silent endpoint: err = %v, want a timeout naming 300ms", err)
	}
	if elapsed > 3*time.Second {
		t.Fatalf("Open took %v with OpTimeout 300ms", elapsed)
	}
}

// After Open, a server that stops answering (or stalls mid-body) makes each
// operation fail within about OpTimeout.
func TestTimeoutEveryOperation(t *testing.T) {
	srv := miniotest.Start(t)
	t.Parallel()
	ctx := context.Background()
	var mode atomic.Int32 // 0 forward, 1 hang, 2 stall GET bodies after 1 KiB
	p := newProxy(t, srv.Endpoint, func(p *proxy, w http.ResponseWriter, r *http.Request) bool {
		switch mode.Load() {
		case 1:
			// Read the body first: only then does the server notice that
			// the client hung up, which ends r.Context().
			io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
			return true
		case 2:
			if r.Method != http.MethodGet {
				return false
			}
			rec := httptest.NewRecorder()
			p.rp.ServeHTTP(rec, r)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.WriteHeader(rec.Code)
			w.Write(rec.Body.Bytes()[:1024])
			w.(http.Flusher).Flush()
			<-r.Context().Done()
			return true
		}
		return false
	})
	o := options(srv, p.endpoint, srv.NewBucket(t), "")
	o.OpTimeout = 500 * time.Millisecond
	st := open(t, o)
	if err := storage.PutBytes(ctx, st, "obj", make([]byte, 64<<10), storage.PutOptions{}); err != nil {
		t.Fatal(err)
	}

	timed := func(what string, op func(ctx context.Context) error) {
		t.Helper()
		// A backstop, so that a missing OpTimeout fails the test, not hangs it.
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		start := time.Now()
		err := op(ctx)
		if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "operation timeout") {
			t.Errorf("%s: err = %v, want an operation timeout", what, err)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Errorf("%s took %v with OpTimeout 500ms", what, d)
		}
	}
	mode.Store(2)
	timed("read of a stalled body", func(ctx context.Context) error {
		_, err := storage.GetBytes(ctx, st, "obj")
		return err
	})
	mode.Store(1)
	timed("Put", func(ctx context.Context) error {
		return storage.PutBytes(ctx, st, "x", []byte("x"), storage.PutOptions{IfAbsent: true})
	})
	timed("Get", func(ctx context.Context) error { _, err := st.Get(ctx, "obj"); return err })
	timed("List", func(ctx context.Context) error { _, err := st.List(ctx, ""); return err })
	timed("Delete", func(ctx context.Context) error { return st.Delete(ctx, "obj") })
}

// A server that answers 503 SlowDown a few times and then recovers is
// retried through; with retries off the same error surfaces.
func TestRetriesOnSlowDown(t *testing.T) {
	srv := miniotest.Start(t)
	t.Parallel()
	ctx := context.Background()
	var failNext, served atomic.Int64
	p := newProxy(t, srv.Endpoint, func(p *proxy, w http.ResponseWriter, r *http.Request) bool {
		if failNext.Add(-1) < 0 {
			failNext.Store(0)
			return false
		}
		served.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprint(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>SlowDown</Code><Message>Please reduce your request rate.</Message></Error>`)
		return true
	})
	bucket := srv.NewBucket(t)
	st := open(t, options(srv, p.endpoint, bucket, ""))
	failNext.Store(3)
	if err := storage.PutBytes(ctx, st, "a", []byte("through"), storage.PutOptions{IfAbsent: true}); err != nil {
		t.Fatalf("Put behind 3 SlowDowns: %v", err)
	}
	failNext.Store(3)
	if got, err := storage.GetBytes(ctx, st, "a"); err != nil || string(got) != "through" {
		t.Fatalf("Get behind 3 SlowDowns = %q, %v", got, err)
	}
	if served.Load() != 6 {
		t.Fatalf("the proxy answered SlowDown %d times, want 6", served.Load())
	}

	o := options(srv, p.endpoint, bucket, "")
	o.MaxRetries = -1
	noRetry := open(t, o)
	failNext.Store(1)
	err := storage.PutBytes(ctx, noRetry, "b", []byte("x"), storage.PutOptions{})
	if err == nil || !strings.Contains(err.Error(), "reduce your request rate") {
		t.Fatalf("Put without retries behind a SlowDown: err = %v, want the SlowDown", err)
	}
}

// A conditional PUT that lands but whose answer is lost is retried; the
// retry is refused (the object exists) and Put recognises its own object
// by its token instead of reporting ErrExists.
func TestConditionalPutAnswerLost(t *testing.T) {
	srv := miniotest.Start(t)
	t.Parallel()
	ctx := context.Background()
	var armed, landed atomic.Bool
	var conditional atomic.Int64
	p := newProxy(t, srv.Endpoint, func(p *proxy, w http.ResponseWriter, r *http.Request) bool {
		if !armed.Load() || r.Method != http.MethodPut || r.Header.Get("If-None-Match") != "*" {
			return false
		}
		conditional.Add(1)
		if !landed.CompareAndSwap(false, true) {
			return false
		}
		rec := httptest.NewRecorder()
		p.rp.ServeHTTP(rec, r)
		if rec.Code != http.StatusOK {
			t.Errorf("the first conditional PUT did not land: %d %s", rec.Code, rec.Body)
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return true
		}
		conn.Close() // the object is stored; its answer is lost
		return true
	})
	st := open(t, options(srv, p.endpoint, srv.NewBucket(t), ""))
	armed.Store(true)
	if err := storage.PutBytes(ctx, st, "log/0", []byte("entry"), storage.PutOptions{IfAbsent: true}); err != nil {
		t.Fatalf("Put whose first answer was lost: %v", err)
	}
	if conditional.Load() != 2 {
		t.Fatalf("saw %d conditional PUTs, want 2 (the lost one and its retry)", conditional.Load())
	}
	if got, err := storage.GetBytes(ctx, st, "log/0"); err != nil || string(got) != "entry" {
		t.Fatalf("Get = %q, %v", got, err)
	}
	// Another Put of the same name is still refused.
	if err := storage.PutBytes(ctx, st, "log/0", []byte("entry"), storage.PutOptions{IfAbsent: true}); !errors.Is(err, storage.ErrExists) {
		t.Fatalf("a second Put of log/0: err = %v, want ErrExists", err)
	}
}

func ExampleParseURL() {
	o, err := s3.ParseURL("s3://checkpoints/jobs/etl?endpoint=127.0.0.1:9000&insecure=true&part-size=8MiB")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("bucket:", o.Bucket)
	fmt.Println("prefix:", o.Prefix)
	fmt.Println("endpoint:", o.Endpoint, "insecure:", o.Insecure)
	fmt.Println("part size:", o.PartSize>>20, "MiB")
	_, err = s3.ParseURL("s3://checkpoints?endpiont=127.0.0.1:9000")
	fmt.Println(err)
	// Output:
	// bucket: checkpoints
	// prefix: jobs/etl
	// endpoint: 127.0.0.1:9000 insecure: true
	// part size: 8 MiB
	// s3: "s3://checkpoints?endpiont=127.0.0.1:9000": unknown parameter "endpiont" (known: endpoint, region, path-style, insecure, op-timeout, part-size, max-retries)
}

// BenchmarkPutGet measures Put and Get of small records and 16 MiB objects
// on MinIO over loopback beside the same on storage.Local, in one run:
//
//	go test ./storage/s3 -run '^$' -bench PutGet -benchtime 2s
func BenchmarkPutGet(b *testing.B) {
	srv := miniotest.Start(b)
	backends := []struct {
		name string
		open func(b *testing.B) storage.Storage
	}{
		{"local", func(b *testing.B) storage.Storage {
			st, err := storage.OpenLocal(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			return st
		}},
		{"minio", func(b *testing.B) storage.Storage { return open(b, options(srv, srv.Endpoint, srv.NewBucket(b), "")) }},
	}
	ctx := context.Background()
	for _, size := range []int{1 << 10, 16 << 20} {
		var buf bytes.Buffer
		if _, err := stream(&buf, int64(size), 1); err != nil {
			b.Fatal(err)
		}
		data := buf.Bytes()
		for _, be := range backends {
			for _, op := range []string{"put", "put-ifabsent", "get"} {
				if op == "put-ifabsent" && size > 1<<10 {
					continue
				}
				b.Run(fmt.Sprintf("backend=%s/op=%s/size=%s", be.name, op, sizeName(size)), func(b *testing.B) {
					st := be.open(b)
					defer st.Close()
					if op == "get" {
						if err := storage.PutBytes(ctx, st, "obj", data, storage.PutOptions{}); err != nil {
							b.Fatal(err)
						}
					}
					b.SetBytes(int64(size))
					b.ResetTimer()
					for i := 0; b.Loop(); i++ {
						var err error
						switch op {
						case "put":
							err = storage.PutBytes(ctx, st, fmt.Sprintf("obj-%d", i%100), data, storage.PutOptions{})
						case "put-ifabsent":
							err = storage.PutBytes(ctx, st, fmt.Sprintf("obj-%d", i), data, storage.PutOptions{IfAbsent: true})
						case "get":
							var rc io.ReadCloser
							if rc, err = st.Get(ctx, "obj"); err == nil {
								_, err = io.Copy(io.Discard, rc)
								rc.Close()
							}
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
				})
			}
		}
	}
}

func sizeName(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("%dMiB", n>>20)
	}
	return fmt.Sprintf("%dKiB", n>>10)
}
