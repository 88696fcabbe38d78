package bench

import (
	"io"
	"testing"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestPeriodicSmall runs the periodic benchmark once on a small writer
// with a few checkpoints, so the code keeps working; it asserts nothing
// about speed, only that the writer worked in both kinds of window and
// that increments were made.
func TestPeriodicSmall(t *testing.T) {
	testutil.RequireRoot(t)
	res, err := RunPeriodic(PeriodicOptions{Dir: t.TempDir(), Size: 8 << 20, Interval: 100e6, Window: 500e6, Runs: 1, Spin: 20000, Keep: 2})
	if err != nil {
		t.Fatal(err)
	}
	res.Print(io.Discard)
	if res.Unchecked <= 0 || res.Checked <= 0 || res.Tracked <= 0 {
		t.Errorf("the writer did not work: %+v", res)
	}
	if res.Checkpoints == 0 || res.Full == res.Checkpoints {
		t.Errorf("no incremental checkpoint in the window: %+v", res)
	}
}

// TestWriterStride: the writer's stride visits every page.
func TestWriterStride(t *testing.T) {
	for _, n := range []uint64{2, 100, 257, 514, 2048, 65536, 257 * 259} {
		s := uint64(writerStride(n))
		if s >= n || gcd(s, n) != 1 {
			t.Errorf("writerStride(%d) = %d: not below it and coprime", n, s)
		}
	}
}
