package image

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// BenchmarkManifestFile is BenchmarkManifestRuns on a real manifest: the
// image directory in RTCR_BENCH_IMAGE (say, the last increment of a
// pre-copy migration kept by RTCR_MIGRATE_BENCH_KEEP), encoded and read
// in format 5 and, re-encoded, in format 4.
func BenchmarkManifestFile(b *testing.B) {
	dir := os.Getenv("RTCR_BENCH_IMAGE")
	if dir == "" {
		b.Skip("RTCR_BENCH_IMAGE names the image whose manifest to time")
	}
	data, err := os.ReadFile(filepath.Join(dir, ManifestName))
	if err != nil {
		b.Fatal(err)
	}
	c, err := readManifest(bytes.NewReader(data), int64(len(data)), dir)
	if err != nil {
		b.Fatal(err)
	}
	runs := 0
	for i := range c.Processes {
		for j := range c.Processes[i].VMAs {
			runs += len(c.Processes[i].VMAs[j].Pages)
		}
	}
	b.Logf("%d processes, %d page runs; format %d manifest of %d bytes", len(c.Processes), runs, c.Version, len(data))
	benchmarkEncodings(b, c)
}
