// Package s3test gives tests checkpoint storage on a real S3-compatible
// server: a MinIO server started by internal/s3test/miniotest (one per test
// binary under miniotest.Main), a fresh bucket per call, and cairn's S3
// backend over it. Without a minio binary the test is skipped, or fails
// when CI=true.
package s3test

import (
	"context"
	"testing"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/cairn-data/cairn/internal/s3test/miniotest"
	"github.com/cairn-data/cairn/storage/s3"
)

// Storage returns S3 storage on a fresh bucket of the shared MinIO server,
// under prefix (may be ""). It is closed when the test ends.
func Storage(t testing.TB, prefix string) *s3.Storage {
	t.Helper()
	return Bucket(t)(prefix)
}

// Bucket creates a fresh bucket on the shared MinIO server and returns a
// function that opens S3 storage on it under a prefix, for tests that want
// many independent locations without a bucket each.
func Bucket(t testing.TB) func(prefix string) *s3.Storage {
	t.Helper()
	srv := miniotest.Start(t)
	bucket := srv.NewBucket(t)
	return func(prefix string) *s3.Storage {
		t.Helper()
		st, err := s3.Open(context.Background(), s3.Options{
			Bucket: bucket, Prefix: prefix, Endpoint: srv.Endpoint, Insecure: true, PathStyle: true,
			Credentials: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, ""),
		})
		if err != nil {
			t.Fatalf("s3test: open bucket %s prefix %s on %s: %v", bucket, prefix, srv.Endpoint, err)
		}
		t.Cleanup(func() { st.Close() })
		return st
	}
}
