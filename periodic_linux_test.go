package rtcr_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestPeriodicRestoreAny runs a counter under `rtcr run --every 200ms
// --keep 4`, SIGKILLs rtcr (perhaps in the middle of a checkpoint) and
// the tree, and restores a checkpoint picked at random among those kept,
// then DIR/latest: each comes back counting on, without a gap, from a
// number it had printed before the kill (the random one no later than
// latest).
func TestPeriodicRestoreAny(t *testing.T) {
	testutil.RequireRoot(t)
	ck := filepath.Join(t.TempDir(), "ck")
	tg := start(t, testutil.BuildRtcr(t), "run", "--dir", ck, "--every", "200ms", "--keep", "4", "--", testutil.BuildC(t, "counter", false), "20")
	deadline := time.Now().Add(60 * time.Second)
	for latestNumber(ck) < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("no 6th checkpoint after 60 s; output:\n%s", tg.output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	init := nsInit(t, tg.pid)
	unix.Kill(tg.pid, unix.SIGKILL) // rtcr run, perhaps while it checkpoints
	unix.Kill(init, unix.SIGKILL)   // and the tree: its pid namespace goes with its init
	tg.waitOriginal()
	for pidFree(init) == false {
		time.Sleep(10 * time.Millisecond)
	}
	all := counted(t, tg.out, 1)
	printed := len(all)
	last, _ := strconv.Atoi(all[printed-1]) // the original's last number
	latest := latestNumber(ck)
	var kept []int
	for n := 1; n <= latest; n++ {
		if _, err := os.Stat(filepath.Join(ck, strconv.Itoa(n), "manifest.img")); err == nil {
			kept = append(kept, n)
		}
	}
	// 5 when rtcr was killed between the link to a new one and the
	// removal of the oldest.
	if len(kept) < 4 || len(kept) > 5 {
		t.Fatalf("checkpoints %v kept up to latest %d, want 4", kept, latest)
	}
	pick := kept[rand.IntN(len(kept)-1)] // not latest: that one comes next
	t.Logf("restoring checkpoint %d of %v, then latest (%d)", pick, kept, latest)
	var firsts []int
	for _, dir := range []string{filepath.Join(ck, strconv.Itoa(pick)), filepath.Join(ck, "latest")} {
		st, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
		if err != nil {
			t.Fatalf("restore %s: %v", dir, err)
		}
		tg.pid, tg.done = st.Pid, false
		lines := counted(t, tg.out, printed+20)
		first := checkConsecutive(t, lines[printed:printed+20])
		if first > last+1 || first < 1 {
			t.Fatalf("%s counts on from %d; before the kill the counter had printed up to %d", dir, first, last)
		}
		firsts = append(firsts, first)
		tg.kill()
		printed = len(counted(t, tg.out, 1))
	}
	if firsts[0] > firsts[1] {
		t.Fatalf("checkpoint %d counts on from %d, later than latest (%d) from %d", pick, firsts[0], latest, firsts[1])
	}
}

// latestNumber returns the checkpoint DIR/latest names, 0 for none.
func latestNumber(dir string) int {
	l, err := os.Readlink(filepath.Join(dir, "latest"))
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(l)
	return n
}

// counted waits (30 s at most) until the file out holds n lines of the
// counter (numbers: rtcr run's own lines on stderr go to the same file)
// and returns them.
func counted(t *testing.T, out string, n int) []string {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(out)
		var lines []string
		for _, l := range strings.Split(string(b), "\n") {
			if _, err := strconv.Atoi(l); err == nil {
				lines = append(lines, l)
			}
		}
		if len(lines) >= n {
			return lines
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d counter lines in %s after 30 s, want %d", len(lines), out, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
