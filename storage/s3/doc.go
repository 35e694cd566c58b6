// Package s3 is cairn's checkpoint storage in an S3 bucket: AWS S3 or any
// S3-compatible server that honours conditional writes (MinIO, for one).
// Importing it registers the "s3" scheme with storage.Open:
//
//	import _ "github.com/cairn-data/cairn/storage/s3"
//
//	s, err := storage.Open(ctx, "s3://bucket/jobs/etl?region=eu-west-1")
//	s, err := storage.Open(ctx, "s3://ckpt/etl?endpoint=127.0.0.1:9000&insecure=true")
//
// or, with every setting in code, s3.Open(ctx, s3.Options{...}). Credentials
// come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN,
// then ~/.aws/credentials (AWS_PROFILE), then the instance's IAM role; never
// from the URL.
//
// # Layout
//
// An object is one S3 object, its key the prefix and the name:
//
//	s3://bucket/prefix?...    + name "offsets/7"   = key "prefix/offsets/7"
//	                          + ".cairn-probe-<hex>"  (Open's probe, deleted at once)
//
// # What it promises, and how
//
//  1. Put is atomic. An object up to PartSize (16 MiB) goes up in one PUT; a
//     larger one through a multipart upload, reading and sending one part at
//     a time, so a Put holds at most one part in memory whatever the
//     object's size. S3 shows a multipart object only when
//     CompleteMultipartUpload succeeds; a Put that fails (a reader error, a
//     cancelled context, a server error) aborts the upload, and nothing
//     appears.
//  2. IfAbsent is a conditional write, If-None-Match: *, sent with the PUT
//     or with the CompleteMultipartUpload, so the server decides atomically
//     at the moment the object would appear. 412 PreconditionFailed is
//     storage.ErrExists. 409 ConditionalRequestConflict (another conditional
//     write of the key in flight) is retried a few times, as AWS advises,
//     and then reported as ErrExists.
//  3. A conditional Put whose request landed but whose answer was lost is
//     retried by the client and refused as existing; Put tells that case
//     from another writer's object by a random token it stores in the
//     object's metadata (x-amz-meta-cairn-put), and succeeds.
//  4. Open refuses a server that ignores conditional writes. It creates
//     "<prefix>/.cairn-probe-<random>" with If-None-Match: *, creates it
//     again the same way, and fails with an error naming the server if the
//     second create succeeds; it deletes the probe. Some S3-compatible
//     stores (older MinIO releases, Ceph RGW, others) accept the header and
//     ignore it, which would let two writers of one checkpoint both think
//     they won. Open also names a missing bucket and says to create it.
//  5. Nothing relies on List being up to date right after a write. AWS S3
//     lists consistently today, but other servers, caches and proxies may
//     not, and cairn does not need it: correctness comes from
//     create-if-absent, and List only discovers names (the highest log
//     entry, the files of a state version), each of which is then read or
//     created by name. List follows every page (1,000 keys each on S3)
//     and returns the names sorted; keys that are not valid object names
//     (a console's "dir/" marker, a leftover probe) are skipped.
//  6. Every request is bounded by OpTimeout (60 s), retries included, and
//     fails with an error matching context.DeadlineExceeded that says so;
//     for Get, the wait for the response and then each Read of the body.
//     Errors name the operation and the s3:// object, and say what to do
//     about a missing bucket, refused credentials or a wrong region.
//
// # Why minio-go
//
// The client is github.com/minio/minio-go/v7, not aws-sdk-go-v2:
//
//   - Less code to depend on: minio-go v7.4.1 is about 30,000 lines of
//     non-test Go for every S3 call, signing and credentials; the SDK's
//     service/s3 module alone is about 105,000, before the config,
//     credentials, IMDS, STS/SSO and transfer-manager modules that the same
//     features need. (The module counts are close: minio-go brings 19
//     modules into cairn's build, mostly hashing and compression
//     libraries.)
//   - S3-compatible servers are first-class: path-style addressing, any
//     endpoint and region, and it is what MinIO itself is tested with;
//     nothing to switch off for a non-AWS endpoint.
//   - Retries are built in (Options.MaxRetries, default 10): every request
//     whose body can be replayed is retried with exponential backoff and
//     full jitter (200 ms doubling, capped at 1 s) on a network error, on
//     HTTP 408, 429, 499, 500, 502, 503, 504 and 520, and on the S3 codes
//     SlowDown, Throttling, RequestTimeout, InternalError, ExpiredToken and
//     the like (retry.go, api.go executeMethod).
//   - It streams uploads of unknown size: PutObject with size -1 reads
//     PartSize into one reused buffer and uploads it as a part, part after
//     part (api-put-object.go, putObjectMultipartStreamNoLength).
//
// This package does not use that last path as it is, because minio-go's
// PutObject sends the If-None-Match of PutObjectOptions.SetMatchETagExcept
// only with the single PUT and with CreateMultipartUpload: its
// completeUploadOpts drops the condition before CompleteMultipartUpload, so
// a conditional create through it could be overtaken by a writer that
// completes in between. Put drives the multipart upload itself through
// minio.Core (NewMultipartUpload, PutObjectPart, CompleteMultipartUpload),
// whose CompleteMultipartUpload sends the options it is given, condition
// included; the buffering is the same: one part in memory.
//
// An upload whose abort fails (the server gone at that moment) leaves parts
// that S3 bills for until they are removed; give the bucket a lifecycle
// rule AbortIncompleteMultipartUpload (as for Spark's S3A committers).
package s3
