// Package miniotest runs a real MinIO server for tests of cairn's S3
// storage and of everything that runs on it.
//
// It finds the minio binary in this order:
//
//  1. the CAIRN_MINIO environment variable (a path);
//  2. "minio" on PATH;
//  3. $(go env GOPATH)/bin/minio.
//
// When there is none, Start skips the test with a message that says how to
// build one, or fails it when CI=true, so that CI cannot pass by skipping:
//
//	GOBIN=$(go env GOPATH)/bin go install github.com/minio/minio@v0.0.0-20260212201848-7aac2a2c5b7c
//
// (.ci/run does this, into a cache directory.)
//
// A server listens on 127.0.0.1 at free ports, keeps its data in a
// temporary directory, and has fixed root credentials (AccessKey,
// SecretKey). Tests pass the credentials explicitly, through
// s3.Options.Credentials in process or Env for a child process, never by
// changing this process's environment, so that tests can run in parallel.
//
// Starting a server takes a second or two, so a package shares one server
// among its tests: its TestMain calls Main, and each test takes a fresh
// bucket (NewBucket) or prefix. Without Main, each Start runs a server of
// its own that t.Cleanup stops.
//
// Usage:
//
//	func TestMain(m *testing.M) { miniotest.Main(m) }
//
//	func TestSomething(t *testing.T) {
//		srv := miniotest.Start(t)
//		bucket := srv.NewBucket(t)
//		st, err := s3.Open(ctx, s3.Options{
//			Bucket: bucket, Endpoint: srv.Endpoint, Insecure: true,
//			Credentials: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""),
//		})
//		...
//	}
package miniotest
