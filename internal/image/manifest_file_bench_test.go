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

// TestWriteV4ForBench writes the manifest of the image in RTCR_BENCH_IMAGE
// in format 4 into RTCR_BENCH_V4 (for BenchmarkManifestFile of an rtcr
// that reads only format 4).
func TestWriteV4ForBench(t *testing.T) {
	dir, out := os.Getenv("RTCR_BENCH_IMAGE"), os.Getenv("RTCR_BENCH_V4")
	if dir == "" || out == "" {
		t.Skip("RTCR_BENCH_IMAGE and RTCR_BENCH_V4 name the image and where to write it in format 4")
	}
	c, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(out, ManifestName), buildManifest(4, jsonOf(t, c)), 0o600); err != nil {
		t.Fatal(err)
	}
}
