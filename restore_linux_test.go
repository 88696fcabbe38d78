package rtcr_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestCounter checkpoints a counter that sleeps in nanosleep between lines,
// kills it, restores it and checks the numbers continue with no gap and no
// restart; twice in a row, so a restored process is itself checkpointable.
func TestCounter(t *testing.T) {
	testutil.RequireRoot(t)
	for _, static := range []bool{false, true} {
		name := "dynamic"
		if static {
			name = "static"
		}
		t.Run(name, func(t *testing.T) {
			tg := start(t, testutil.BuildC(t, "counter", static))
			n := 20
			for round := 0; round < 2; round++ {
				testutil.WaitForLines(t, tg.out, n, 10*time.Second)
				dir := tg.dump(false)
				before := len(testutil.WaitForLines(t, tg.out, 0, time.Second))
				tg.restore(dir)
				n = before + 30
				lines := testutil.WaitForLines(t, tg.out, n, 10*time.Second)
				if first := checkConsecutive(t, lines); first != 0 {
					t.Fatalf("counter started at %d, want 0", first)
				}
			}
		})
	}
}

// TestLeaveRunning dumps with LeaveRunning: the original goes on counting;
// after it is killed, the restored copy continues from the checkpoint.
func TestLeaveRunning(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "counter", false))
	testutil.WaitForLines(t, tg.out, 20, 10*time.Second)
	atDump := len(testutil.WaitForLines(t, tg.out, 0, time.Second))
	dir := tg.dump(true)
	lines := testutil.WaitForLines(t, tg.out, atDump+20, 10*time.Second)
	checkConsecutive(t, lines)
	tg.kill()
	tg.done = false
	atKill := len(testutil.WaitForLines(t, tg.out, 0, time.Second))
	tg.restore(dir)
	lines = testutil.WaitForLines(t, tg.out, atKill+20, 10*time.Second)
	resumed := lines[atKill:]
	first := checkConsecutive(t, resumed)
	if first < atDump || first > atKill {
		t.Fatalf("restored counter resumed at %d, want between %d (lines before dump) and %d", first, atDump, atKill)
	}
}

// TestHeap restores 256 MiB of seeded heap, plus brk, stack, data and bss.
func TestHeap(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "heap", false), "256", "7", "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	dir := tg.dump(false)
	tg.restore(dir)
	tg.fire()
	if code := tg.wait(60 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("heap check after restore: exit %d, output:\n%s", code, tg.output())
	}
}

// TestMappedFile restores private and shared file mappings, a file open at
// an offset, shared and private anonymous memory, /dev/null and /dev/zero.
func TestMappedFile(t *testing.T) {
	testutil.RequireRoot(t)
	data := writeDataFile(t)
	tg := start(t, testutil.BuildC(t, "mapfile", false), data, "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	dir := tg.dump(false)
	tg.restore(dir)
	tg.fire()
	if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("mapfile check after restore: exit %d, output:\n%s", code, tg.output())
	}
}

// writeDataFile writes the 64 KiB file mapfile.c expects: byte i is i*7.
func writeDataFile(t *testing.T) string {
	t.Helper()
	data := filepath.Join(t.TempDir(), "data")
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i * 7)
	}
	if err := os.WriteFile(data, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return data
}

// TestAVX keeps ymm/zmm, opmask, MXCSR and x87 state live across the
// checkpoint.
func TestAVX(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "avx", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	if strings.Contains(tg.output(), "SKIP") {
		t.Skip("CPU without AVX")
	}
	dir := tg.dump(false)
	tg.restore(dir)
	tg.fire()
	if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("avx check after restore: exit %d, output:\n%s", code, tg.output())
	}
}

// waitState waits until process pid is in state want, or timeout passes,
// and returns the last state seen.
func waitState(pid int, want byte, timeout time.Duration) byte {
	deadline := time.Now().Add(timeout)
	for {
		s := state(pid)
		if s == want || time.Now().After(deadline) {
			return s
		}
		time.Sleep(time.Millisecond)
	}
}

// TestStoppedTarget dumps a process stopped by SIGSTOP (group-stop): the
// dump succeeds and leaves it stopped; restored, it is stopped again;
// SIGCONT lets it go on.
func TestStoppedTarget(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "counter", false))
	testutil.WaitForLines(t, tg.out, 5, 10*time.Second)
	if err := syscall.Kill(tg.pid, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	for state(tg.pid) != 'T' {
		time.Sleep(time.Millisecond)
	}
	tg.dump(true)
	// Released, the threads go back into the group stop (briefly running
	// on the way: wait, a loaded machine may take a while).
	if s := waitState(tg.pid, 'T', 10*time.Second); s != 'T' {
		t.Fatalf("after the dump the stopped target is in state %c for 10 s, want T", s)
	}
	// Killed and restored, it comes back stopped.
	dir := tg.dump(false)
	tg.restore(dir)
	if s := waitState(tg.pid, 'T', 10*time.Second); s != 'T' {
		t.Errorf("restored, the stopped target is in state %c for 10 s, want T", s)
	}
	n := len(testutil.WaitForLines(t, tg.out, 0, time.Second))
	_ = syscall.Kill(tg.pid, syscall.SIGCONT)
	checkConsecutive(t, testutil.WaitForLines(t, tg.out, n+5, 10*time.Second))
}
