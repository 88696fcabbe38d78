package bench

import (
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// statsDump is the stats-dump file of a `criu dump` (CRIU 4.2) of a
// 32-process tree; `crit show` reads freezing_time 4317 and frozen_time
// 145767 (µs) in it.
var statsDump = []byte{
	0x40, 0x59, 0x10, 0x55, 0x06, 0x33, 0x09, 0x57, 0x28, 0x00, 0x00, 0x00,
	0x0a, 0x26, 0x08, 0xdd, 0x21, 0x10, 0xe7, 0xf2, 0x08, 0x18, 0xb5, 0x96,
	0x01, 0x20, 0xce, 0x1a, 0x28, 0xc4, 0x0a, 0x30, 0x00, 0x38, 0x82, 0x07,
	0x40, 0x00, 0x48, 0x00, 0x50, 0xc0, 0x01, 0x58, 0xc0, 0x01, 0x60, 0x00,
	0x68, 0x00, 0x70, 0x00,
}

// TestCRIUFrozen reads the time CRIU kept a tree stopped from its stats,
// and refuses a cut file.
func TestCRIUFrozen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "stats-dump")
	if err := os.WriteFile(path, statsDump, 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := criuFrozen(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := (4317 + 145767) * time.Microsecond; d != want {
		t.Fatalf("frozen %v, want %v", d, want)
	}
	if err := os.WriteFile(path, statsDump[:30], 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := criuFrozen(path); err == nil {
		t.Fatal("a cut stats file was read")
	}
}

// TestRunShapesCRIU runs the shapes against CRIU once, when RTCR_CRIU
// names a criu binary (tools/build-criu.sh builds one); it asserts nothing
// about speed.
func TestRunShapesCRIU(t *testing.T) {
	testutil.RequireRoot(t)
	criu := os.Getenv("RTCR_CRIU")
	if criu == "" {
		t.Skip("RTCR_CRIU not set")
	}
	shapes, err := RunShapes(t.TempDir(), 4, 3, 1, criu)
	if err != nil {
		t.Fatal(err)
	}
	PrintCRIU(io.Discard, shapes)
	for _, s := range shapes {
		if c := s.CRIU; c == nil || c.Dump <= 0 || c.Restore <= 0 || c.Freeze <= 0 || c.DumpCPU <= 0 {
			t.Errorf("%s: CRIU not measured: %+v", s.Name, c)
		}
		if s.DumpCPU <= 0 {
			t.Errorf("%s: rtcr's dump CPU not measured", s.Name)
		}
	}
}

// BenchmarkShapes prints the 64-thread and 32-process shapes, best of 3,
// and, when RTCR_CRIU names a criu binary, the same with CRIU and the
// ratios. Run it with -benchtime=1x -v.
func BenchmarkShapes(b *testing.B) {
	testutil.RequireRoot(b)
	criu := os.Getenv("RTCR_CRIU")
	for i := 0; i < b.N; i++ {
		shapes, err := RunShapes("/dev/shm", 64, 32, 3, criu)
		if err != nil {
			b.Fatal(err)
		}
		PrintShapes(os.Stdout, shapes)
		PrintCRIU(os.Stdout, shapes)
		for _, s := range shapes {
			unit := "threads"
			if s.Name != shapes[0].Name {
				unit = "procs"
			}
			b.ReportMetric(float64(s.Freeze.Microseconds())/1000, unit+"-frozen-ms")
			b.ReportMetric(float64(s.Restore.Microseconds())/1000, unit+"-restore-ms")
			if s.CRIU != nil {
				b.ReportMetric(s.Freeze.Seconds()/s.CRIU.Freeze.Seconds(), unit+"-frozen/criu")
				b.ReportMetric(s.Dump.Seconds()/s.CRIU.Dump.Seconds(), unit+"-dump/criu")
				b.ReportMetric(s.Restore.Seconds()/s.CRIU.Restore.Seconds(), unit+"-restore/criu")
			}
		}
	}
}
