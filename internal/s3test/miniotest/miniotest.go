package miniotest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// Version is the MinIO module version that CI builds, in the go install
// command of the skip message.
const Version = "v0.0.0-20260212201848-7aac2a2c5b7c"

// InstallHint says how to get a minio binary.
const InstallHint = "build one with: GOBIN=$(go env GOPATH)/bin go install github.com/minio/minio@" + Version +
	" (or set CAIRN_MINIO to a minio binary)"

// readyTimeout bounds the wait for a starting server.
const readyTimeout = 30 * time.Second

// Root credentials of every server.
const (
	accessKey = "cairn-test"
	secretKey = "cairn-test-secret"
)

// Server is a running MinIO server.
type Server struct {
	// Endpoint is the S3 API's host:port, plain HTTP.
	Endpoint string
	// AccessKey and SecretKey are the root credentials.
	AccessKey, SecretKey string

	dir    string
	ownDir bool // dir was made by os.MkdirTemp, not t.TempDir
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	client *minio.Client
}

var (
	mainUsed   atomic.Bool // Main is running the tests: share one server
	sharedOnce sync.Once
	shared     *Server
	sharedErr  error
	sharedSkip bool // no binary
	buckets    atomic.Int64
)

// Main runs the tests of a package that shares one server among them, and
// stops the server when they end. Call it from TestMain:
//
//	func TestMain(m *testing.M) { miniotest.Main(m) }
//
// It does not return: it exits with the tests' status.
func Main(m *testing.M) {
	mainUsed.Store(true)
	code := m.Run()
	if shared != nil {
		shared.stop()
	}
	os.Exit(code)
}

// Start returns a running server: the package's shared one under Main
// (started by the first test that asks), otherwise one of the test's own,
// stopped by t.Cleanup. Without a minio binary it skips the test, or fails
// it when CI=true; see the package documentation.
func Start(t testing.TB) *Server {
	t.Helper()
	if mainUsed.Load() {
		sharedOnce.Do(func() {
			bin, err := Binary()
			if err != nil {
				sharedSkip, sharedErr = true, err
				return
			}
			shared, sharedErr = start(bin, "")
		})
		switch {
		case sharedSkip:
			skipOrFail(t, sharedErr)
		case sharedErr != nil:
			t.Fatal(sharedErr)
		}
		return shared
	}
	bin, err := Binary()
	if err != nil {
		skipOrFail(t, err)
	}
	srv, err := start(bin, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.stop)
	return srv
}

func skipOrFail(t testing.TB, err error) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v; CI=true, so the MinIO tests must run", err)
	}
	t.Skip(err)
}

// Binary finds the minio binary: $CAIRN_MINIO, then minio on PATH, then
// $(go env GOPATH)/bin/minio.
func Binary() (string, error) {
	if p := os.Getenv("CAIRN_MINIO"); p != "" {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			return "", fmt.Errorf("miniotest: CAIRN_MINIO=%s is not a minio binary; %s", p, InstallHint)
		}
		return p, nil
	}
	if p, err := exec.LookPath("minio"); err == nil {
		return p, nil
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "minio")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("miniotest: no minio binary found (CAIRN_MINIO, PATH, $(go env GOPATH)/bin); %s", InstallHint)
}

// start runs bin on free loopback ports with its data in dir (a new
// temporary directory when dir is "") and waits until it is ready. A port
// taken between choosing and binding it gets another try.
func start(bin, dir string) (*Server, error) {
	var err error
	for range 3 {
		var srv *Server
		if srv, err = startOnce(bin, dir); err == nil {
			return srv, nil
		}
	}
	return nil, err
}

func startOnce(bin, dir string) (*Server, error) {
	srv := &Server{AccessKey: accessKey, SecretKey: secretKey, dir: dir, out: &syncBuffer{}, exited: make(chan struct{})}
	if dir == "" {
		d, err := os.MkdirTemp("", "cairn-minio-")
		if err != nil {
			return nil, fmt.Errorf("miniotest: %w", err)
		}
		srv.dir, srv.ownDir = d, true
	}
	apiPort, err := freePort()
	if err != nil {
		return nil, err
	}
	consolePort, err := freePort()
	if err != nil {
		return nil, err
	}
	srv.Endpoint = net.JoinHostPort("127.0.0.1", apiPort)
	data := filepath.Join(srv.dir, "data")
	srv.cmd = exec.Command(bin, "server", data,
		"--address", srv.Endpoint,
		"--console-address", net.JoinHostPort("127.0.0.1", consolePort),
		"--certs-dir", filepath.Join(srv.dir, "certs"),
		"--quiet")
	srv.cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+accessKey,
		"MINIO_ROOT_PASSWORD="+secretKey,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	)
	srv.cmd.Stdout, srv.cmd.Stderr = srv.out, srv.out
	srv.cmd.SysProcAttr = dieWithParent()
	if err := srv.cmd.Start(); err != nil {
		srv.removeDir()
		return nil, fmt.Errorf("miniotest: start %s: %w", bin, err)
	}
	go func() {
		srv.cmd.Wait()
		close(srv.exited)
	}()
	if err := srv.waitReady(); err != nil {
		srv.stop()
		return nil, err
	}
	srv.client, err = minio.New(srv.Endpoint, &minio.Options{
		Creds: credentials.NewStaticV4(accessKey, secretKey, ""), Region: "us-east-1",
	})
	if err != nil {
		srv.stop()
		return nil, fmt.Errorf("miniotest: client for %s: %w", srv.Endpoint, err)
	}
	return srv, nil
}

func (s *Server) waitReady() error {
	url := "http://" + s.Endpoint + "/minio/health/ready"
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	for {
		resp, err := client.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.exited:
			return fmt.Errorf("miniotest: %s exited before it was ready (%v); its output:\n%s", s.cmd.Path, s.cmd.ProcessState, s.out)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("miniotest: %s not ready at %s after %v; its output:\n%s", s.cmd.Path, url, readyTimeout, s.out)
		}
	}
}

func (s *Server) stop() {
	if s.cmd != nil && s.cmd.Process != nil {
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.removeDir()
}

func (s *Server) removeDir() {
	if s.ownDir {
		os.RemoveAll(s.dir)
	}
}

// Output returns what the server has printed so far.
func (s *Server) Output() string { return s.out.String() }

// URL returns the s3:// URL of a bucket and prefix on this server, for
// storage.Open; credentials come from the environment (see Env).
func (s *Server) URL(bucket, prefix string) string {
	u := "s3://" + bucket
	if prefix = strings.Trim(prefix, "/"); prefix != "" {
		u += "/" + prefix
	}
	return u + "?endpoint=" + s.Endpoint + "&insecure=true&path-style=true&region=us-east-1"
}

// Env returns the environment variables that give a child process this
// server's credentials, to append to exec.Cmd.Env.
func (s *Server) Env() []string {
	return []string{
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_SESSION_TOKEN=",
		"AWS_REGION=us-east-1",
	}
}

// Client returns an S3 client with root credentials, for test set-up
// (bucket policies, direct inspection).
func (s *Server) Client() *minio.Client { return s.client }

// CreateBucket creates a bucket, failing the test if it cannot.
func (s *Server) CreateBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := s.client.MakeBucket(ctx, name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("miniotest: create bucket %s on %s: %v", name, s.Endpoint, err)
	}
}

// NewBucket creates a bucket with a fresh name derived from the test's
// name and returns the name.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	var b strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		switch {
		case r >= 'a' && r <= 'z' || r >= '0' && r <= '9':
			b.WriteRune(r)
		case b.Len() > 0 && !strings.HasSuffix(b.String(), "-"):
			b.WriteByte('-')
		}
	}
	name := strings.Trim(b.String(), "-")
	if len(name) > 40 {
		name = strings.Trim(name[:40], "-")
	}
	if name == "" {
		name = "test"
	}
	name = fmt.Sprintf("%s-%d", name, buckets.Add(1))
	s.CreateBucket(t, name)
	return name
}

// dieWithParent asks, where the system can (Linux's Pdeathsig), that the
// server be killed when this process dies, even if no cleanup runs (a
// panic, a test timeout, SIGKILL). Set by reflection because the field
// exists only on Linux.
func dieWithParent() *syscall.SysProcAttr {
	attr := &syscall.SysProcAttr{}
	if f := reflect.ValueOf(attr).Elem().FieldByName("Pdeathsig"); f.IsValid() && f.Type() == reflect.TypeOf(syscall.SIGKILL) {
		f.Set(reflect.ValueOf(syscall.SIGKILL))
	}
	return attr
}

func freePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("miniotest: find a free port: %w", err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return port, nil
}

// syncBuffer collects a process's output; it keeps the last 64 KiB.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if over := b.buf.Len() - 64<<10; over > 0 {
		b.buf.Next(over)
	}
	return len(p), nil
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
