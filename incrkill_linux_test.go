package rtcr_test

import (
	"bytes"
	"fmt"
	"math/rand"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
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

// TestKillPeriodicRun SIGKILLs `rtcr run --every` at random moments (in
// its first full checkpoint, in an increment, in a merge, between them):
// each time the program in its namespace runs on, neither stopped nor
// traced, and writes its tracked pages without stalling; then its
// namespace is killed through its init.
func TestKillPeriodicRun(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildRtcr(t)
	prog := testutil.BuildC(t, "dirtywriter", false)
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	const npages = 4096 // 16 MiB: a full checkpoint takes a while
	for i := 0; i < 8; i++ {
		ck := filepath.Join(t.TempDir(), "ck")
		tg := start(t, bin, "run", "--dir", ck, "--every", "50ms", "--keep", "2", "--", prog, strconv.Itoa(npages))
		testutil.WaitForFile(t, tg.out, "ready ", 30*time.Second)
		init, program := nsInit(t, tg.pid), nsProgram(t, tg.pid)
		w := &writer{target: tg, npages: npages, stamps: make([]int64, npages)}
		// Rounds of writes while checkpoints run, then the kill at a
		// random moment within the next 400 ms.
		for r := 0; r < 1+i%3; r++ {
			w.run("", fmt.Sprintf("w %d %d %d", rng.Intn(npages), rng.Intn(npages), rng.Intn(npages)))
		}
		time.Sleep(time.Duration(rng.Int63n(int64(400 * time.Millisecond))))
		_ = unix.Kill(tg.pid, unix.SIGKILL)
		_ = tg.cmd.Wait()
		t.Logf("kill %d: latest checkpoint %d", i, latestNumber(ck))
		deadline := time.Now().Add(30 * time.Second)
		for (tracerPid(program) != 0 || state(program) == 'T' || state(program) == 't') && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if tp, st := tracerPid(program), state(program); tp != 0 || st == 'T' || st == 't' {
			t.Fatalf("kill %d: after the kill the program %d is traced by %d, state %c", i, program, tp, st)
		}
		// Every page, tracked or not, written at once: a page left
		// write-protected with nobody to resolve its fault would stall.
		var line []string
		for p := 0; p < npages; p += 97 {
			line = append(line, strconv.Itoa(p))
		}
		w.run("", "w "+strings.Join(line, " "))
		w.round++
		w.send("", w.round, "verify")
		w.waitFor("\nOK ")
		_ = unix.Kill(init, unix.SIGKILL) // the namespace goes with its init
		tg.done = true
	}
}
