package dataset

import (
	"testing"

	"github.com/cairn-data/cairn/internal/s3test"
	"github.com/cairn-data/cairn/internal/s3test/miniotest"
	"github.com/cairn-data/cairn/storage"
)

func TestMain(m *testing.M) { miniotest.Main(m) }

// The checkpoint fault test on a real S3-compatible server (MinIO), at
// every storage operation.
func TestCheckpointFaultAtEveryOperationS3(t *testing.T) {
	open := s3test.Bucket(t)
	checkpointFaultEveryOperation(t, func(label string) storage.Storage { return open(label) }, nil)
}
