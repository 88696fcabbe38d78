package bench

import (
	"io"
	"os"
	"strconv"
	"testing"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestRunSmall runs every measurement once on small shapes, so the
// benchmark code keeps working; it asserts nothing about speed.
func TestRunSmall(t *testing.T) {
	testutil.RequireRoot(t)
	res, err := Run(Options{Size: 4 << 20, Runs: 1, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	res.Print(io.Discard)
	shapes, err := RunShapes(t.TempDir(), 4, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	PrintShapes(io.Discard, shapes)
	for _, s := range shapes {
		if s.Dump <= 0 || s.Restore <= 0 || s.Freeze <= 0 {
			t.Errorf("%s: not measured: %+v", s.Name, s)
		}
	}
}

// BenchmarkDumpRestore reports dump and restore throughput and the ratios
// to their ceilings for RTCR_BENCH_MIB MiB (default 256) in /dev/shm.
// One iteration is a whole best-of-3 measurement: run it with
// -benchtime=1x.
func BenchmarkDumpRestore(b *testing.B) {
	testutil.RequireRoot(b)
	mib := 256
	if v, err := strconv.Atoi(os.Getenv("RTCR_BENCH_MIB")); err == nil && v > 0 {
		mib = v
	}
	for i := 0; i < b.N; i++ {
		res, err := Run(Options{Size: uint64(mib) << 20, Runs: 3, Dir: "/dev/shm"})
		if err != nil {
			b.Fatal(err)
		}
		mb := float64(res.Size) / 1e6
		b.ReportMetric(mb/res.Dump.Seconds(), "dump-MB/s")
		b.ReportMetric(mb/res.Restore.Seconds(), "restore-MB/s")
		b.ReportMetric(res.ReadvWrite.Seconds()/res.Dump.Seconds(), "dump/ceiling")
		b.ReportMetric(res.WritevFresh.Seconds()/res.Restore.Seconds(), "restore/ceiling")
		b.ReportMetric(float64(res.Freeze.Microseconds())/1000, "freeze-ms")
	}
}
