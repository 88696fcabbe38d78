package rtcr_test

import (
	"bytes"
	"fmt"
	"math/rand"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestKillTrackedDump SIGKILLs `rtcr dump --track-mem` (full and
// incremental) at random moments: each time the writer runs on, is neither
// stopped nor traced, and writes pages (tracked or not) without stalling.
// Afterwards a full dump with --track-mem starts tracking over and an
// increment on it restores to the right bytes.
func TestKillTrackedDump(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildRtcr(t)
	w := startWriter(t, 8192, 1) // 32 MiB: the dump takes a while
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	span := 300 * time.Millisecond
	for i := 0; i < 10; i++ {
		name := fmt.Sprintf("k%d", i)
		args := []string{"dump", "--pid", strconv.Itoa(w.pid), "--dir", filepath.Join(w.ck, name), "-R", "--track-mem"}
		if i%2 == 1 {
			w.dump(fmt.Sprintf("base%d", i), "")
			w.run("", fmt.Sprintf("w %d %d", i, 4000+i))
			args = append(args, "--parent", fmt.Sprintf("../base%d", i))
		}
		cmd := exec.Command(bin, args...)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.Int63n(int64(span))))
		_ = cmd.Process.Kill()
		err := cmd.Wait()
		if err == nil {
			// It finished first: kill the next one sooner or later.
			span = max(time.Since(start), 10*time.Millisecond)
		}
		t.Logf("kill %d after %v: %v %s", i, time.Since(start).Round(time.Millisecond), err, bytes.TrimSpace(out.Bytes()))
		deadline := time.Now().Add(30 * time.Second)
		for (tracerPid(w.pid) != 0 || state(w.pid) == 'T' || state(w.pid) == 't') && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if tp, st := tracerPid(w.pid), state(w.pid); tp != 0 || st == 'T' || st == 't' {
			t.Fatalf("after the kill the writer is traced by %d, state %c", tp, st)
		}
		// Pages in tracked memory and in the heap, written at once.
		w.run("", fmt.Sprintf("w %d %d %d", 10+i, 2000+i, 8000+i))
	}
	w.dump("full", "")
	w.run("", "w 1 2 3")
	c := w.dump("incr", "full")
	w.wantPages(c, w.pid, 1, 2, 3)
	w.restoreAndVerify(filepath.Join(w.ck, "incr"))
}
