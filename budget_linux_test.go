package rtcr_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/inspect"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// startHot starts testdata/hotwriter.c: npages pages filled, then pages
// of the first hot (0: all) written continuously, with a pause of pauseUs
// µs every 16 writes; churn adds a region mapped, grown, shrunk and moved
// all the time.
func startHot(t *testing.T, npages, hot, pauseUs int, churn bool) *target {
	t.Helper()
	args := []string{strconv.Itoa(npages), strconv.Itoa(hot), strconv.Itoa(pauseUs)}
	if churn {
		args = append(args, "churn")
	}
	tg := start(t, testutil.BuildC(t, "hotwriter", false), args...)
	testutil.WaitForFile(t, tg.out, "ready ", 30*time.Second)
	return tg
}

// hotProgress has the writer pid (output in tg's file) print its
// sequence number and waits for it: it runs and writes, not stalled.
func hotProgress(t *testing.T, tg *target, pid int) uint64 {
	t.Helper()
	n := strings.Count(tg.output(), "seq ")
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(tg.output(), "seq ") <= n {
		if time.Now().After(deadline) {
			t.Fatalf("writer %d does not answer SIGUSR2 within 60 s (stopped or stalled?); state %c, output:\n%s", pid, state(pid), tg.output())
		}
		_ = unix.Kill(pid, unix.SIGUSR2)
		time.Sleep(20 * time.Millisecond)
	}
	m := regexp.MustCompile(`seq (\d+)\n`).FindAllStringSubmatch(tg.output(), -1)
	v, _ := strconv.ParseUint(m[len(m)-1][1], 10, 64)
	return v
}

// restoreHot kills the writer, restores dir and has the restored writer
// check every page against its table.
func restoreHot(t *testing.T, tg *target, dir string) {
	t.Helper()
	tg.kill()
	tg.done = false
	before := len(tg.output())
	tg.restore(dir)
	_ = unix.Kill(tg.pid, unix.SIGUSR1)
	code := tg.wait(60 * time.Second)
	out := tg.output()[before:]
	if code != 0 || !regexp.MustCompile(`\nOK \d+\n|^OK \d+\n`).MatchString(out) {
		t.Fatalf("restored writer from %s: exit %d, output:\n%s", dir, code, out)
	}
	t.Logf("restored %s: %s", dir, strings.TrimSpace(out))
}

// checkBudgetImage checks that the image in dir records the budget st
// reports, and that inspect shows it.
func checkBudgetImage(t *testing.T, dir string, st *rtcr.DumpStats) {
	t.Helper()
	c, err := image.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	b := c.Budget
	if b == nil || b.Rounds != st.Budget.Rounds || b.PreCopied != st.Budget.PreCopiedPages || b.Over != st.Budget.Over || b.MaxNs != int64(st.Budget.Max) {
		t.Fatalf("image %s records budget %+v, the dump reported %+v", dir, b, st.Budget)
	}
	var out bytes.Buffer
	if err := inspect.Write(&out, dir, c); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%d pre-copy rounds", b.Rounds)
	if b.Over != "" {
		want = "missed: " + b.Over
	}
	if !strings.Contains(out.String(), want) {
		t.Fatalf("inspect of %s does not show %q:\n%s", dir, want, out.String())
	}
}

// knownReason reports whether over gives one of the reasons an
// increment misses its budget. Which one is not asserted: a writer
// descheduled for a whole round on a busy machine leaves no page to copy,
// and the rounds stop because the copy fits.
func knownReason(over string) bool {
	for _, r := range []string{"writes faster than rtcr copies", "(the round cap)", "the state other than memory alone took", "the memory step of the freeze took"} {
		if strings.Contains(over, r) {
			return true
		}
	}
	return false
}

// budgetSeries takes n checkpoints of the writer tg with a Checkpointer
// keeping 2 (older ones merged into their child), whose budget (1 µs)
// no checkpoint can meet: every increment makes pre-copy rounds (until
// they stop shrinking the dirty set, reach the cap, or find nothing left
// to copy), is taken all the same and says why it missed the budget. The
// newest is restored and checked.
func budgetSeries(t *testing.T, tg *target, n int) {
	ck := t.TempDir()
	cp, err := rtcr.NewCheckpointer(tg.pid, rtcr.CheckpointerOptions{Dir: ck, Keep: 2, MaxFreeze: time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	var last string
	for i := 0; i < n; i++ {
		// Two answers: a page written between them, since the last
		// checkpoint.
		hotProgress(t, tg, tg.pid)
		hotProgress(t, tg, tg.pid)
		st, err := cp.Checkpoint(context.Background())
		if err != nil {
			t.Fatalf("checkpoint %d: %v", i+1, err)
		}
		b := st.Budget
		if b == nil {
			t.Fatalf("checkpoint %d: no budget reported", i+1)
		}
		t.Logf("checkpoint %d: parent %q, %d rounds, %d pages pre-copied, %d in the freeze, frozen %v: %s", i+1, st.Parent, b.Rounds, b.PreCopiedPages, b.FrozenPages, st.Freeze, b.Over)
		switch {
		case i == 0 && (st.Parent != "" || b.Rounds != 0 || !strings.Contains(b.Over, "full image")):
			t.Fatalf("checkpoint 1: want a full image without pre-copy, over the budget because it is full; got %+v", b)
		case i > 0 && (st.Parent == "" || b.Rounds < 1 || b.PreCopiedPages == 0):
			t.Fatalf("checkpoint %d: want an increment with pre-copy rounds; got parent %q, %+v, notes %v", i+1, st.Parent, b, st.Notes)
		case i > 0 && !knownReason(b.Over):
			t.Fatalf("checkpoint %d: over the budget %q, want a reason", i+1, b.Over)
		}
		checkBudgetImage(t, st.Dir, st)
		last = st.Dir
	}
	restoreHot(t, tg, last)
	_ = cp.Close() // the writer is gone: nothing to do
}

// TestBudgetPreCopy: a writer that keeps writing 32 MiB, checkpointed
// with a freeze budget: increments pre-copy while it runs, report their
// rounds and why they missed the budget, record it in the image, and the
// newest restores with every page right.
func TestBudgetPreCopy(t *testing.T) {
	testutil.RequireRoot(t)
	budgetSeries(t, startHot(t, 8192, 0, 20, false), 4)
}

// TestBudgetPreCopyMapChurn: the same while the writer maps, grows,
// shrinks, moves and unmaps a region all the time, during the rounds too.
func TestBudgetPreCopyMapChurn(t *testing.T) {
	testutil.RequireRoot(t)
	budgetSeries(t, startHot(t, 4096, 1024, 0, true), 5)
}

// TestBudgetRunFastWriter: `rtcr run --every --max-freeze` of a writer
// writing 64 MiB as fast as it can: the checkpoints are taken, their
// lines show the pre-copy rounds and why they are over the budget (one at
// least because the writer is faster than the copy), rtcr inspect shows
// it, and the latest restores right.
func TestBudgetRunFastWriter(t *testing.T) {
	testutil.RequireRoot(t)
	ck := filepath.Join(t.TempDir(), "ck")
	bin := testutil.BuildRtcr(t)
	tg := start(t, bin, "run", "--dir", ck, "--every", "200ms", "--max-freeze", "1us", "--keep", "0", "--",
		testutil.BuildC(t, "hotwriter", false), "16384", "0", "0")
	testutil.WaitForFile(t, tg.out, "ready ", 30*time.Second)
	over := regexp.MustCompile(`checkpoint (\d+) into \S+ \(incremental on \d+, [^)]*\); pre-copy (\d+) rounds, (\d+) pages while running, (\d+) in the freeze; over the budget of 1µs: ([^\n]*)`)
	// Until one says the writer is faster than the copy (or the round
	// cap): one whose writer was descheduled for a whole round finds
	// nothing left to copy and stops its rounds, over the budget for
	// another reason.
	faster := regexp.MustCompile(`over the budget of 1µs: [^\n]*(writes faster than rtcr copies|the round cap)`)
	deadline := time.Now().Add(120 * time.Second)
	for len(over.FindAllString(tg.output(), -1)) < 2 || !faster.MatchString(tg.output()) {
		if time.Now().After(deadline) {
			t.Fatalf("within 120 s, no 2 incremental checkpoints over the budget, one of them because the writer is faster; output:\n%s", tg.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	init := nsInit(t, tg.pid)
	prog := nsProgram(t, tg.pid)
	hotProgress(t, tg, prog) // checkpoints never stopped it
	unix.Kill(tg.pid, unix.SIGKILL)
	unix.Kill(init, unix.SIGKILL)
	tg.waitOriginal()
	waitGone(t, init)
	out := tg.output()
	for _, m := range over.FindAllStringSubmatch(out, -1) {
		if !knownReason(m[5]) {
			t.Fatalf("checkpoint %s: over the budget, but not why: %s", m[1], m[0])
		}
		insp, err := exec.Command(bin, "inspect", "--dir", filepath.Join(ck, m[1])).CombinedOutput()
		if err != nil || !strings.Contains(string(insp), "missed: ") || !strings.Contains(string(insp), m[2]+" pre-copy rounds") {
			t.Fatalf("rtcr inspect of checkpoint %s (%v) does not show its budget:\n%s", m[1], err, insp)
		}
	}
	t.Logf("%s", strings.Join(regexp.MustCompile(`rtcr run: checkpoint[^\n]*`).FindAllString(out, -1), "\n"))
	before := len(tg.output())
	st, err := rtcr.Restore(rtcr.RestoreOptions{Dir: filepath.Join(ck, "latest")})
	if err != nil {
		t.Fatalf("restore latest: %v", err)
	}
	tg.pid, tg.done = st.Pid, false
	_ = unix.Kill(st.Program, unix.SIGUSR1)
	if code := tg.wait(60 * time.Second); code != 0 || !strings.Contains(tg.output()[before:], "OK ") {
		t.Fatalf("restored latest: exit %d, output:\n%s", code, tg.output()[before:])
	}
}

// TestKillPreCopyDump SIGKILLs `rtcr dump --parent --max-freeze` at random
// moments, mostly during its pre-copy rounds: each time the writer runs
// on, neither stopped nor traced, and keeps writing. Afterwards an
// increment with a budget on a new full image restores right.
func TestKillPreCopyDump(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildRtcr(t)
	tg := startHot(t, 16384, 0, 0, false) // 64 MiB written as fast as it can
	ck := t.TempDir()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	span := 400 * time.Millisecond
	full := func(name string) {
		if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: filepath.Join(ck, name), LeaveRunning: true, TrackMem: true}); err != nil {
			t.Fatalf("dump %s: %v", name, err)
		}
	}
	for i := 0; i < 8; i++ {
		base := fmt.Sprintf("base%d", i)
		full(base)
		hotProgress(t, tg, tg.pid)
		cmd := exec.Command(bin, "dump", "--pid", strconv.Itoa(tg.pid), "--dir", filepath.Join(ck, fmt.Sprintf("k%d", i)),
			"-R", "--track-mem", "--parent", "../"+base, "--max-freeze", "1us", "-v3")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		startAt := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(rng.Int63n(int64(span))))
		_ = cmd.Process.Kill()
		err := cmd.Wait()
		if err == nil {
			span = max(time.Since(startAt), 20*time.Millisecond) // it finished first: sooner next time
		}
		rounds := strings.Count(out.String(), "pre-copy round")
		t.Logf("kill %d after %v: %v, %d pre-copy rounds logged", i, time.Since(startAt).Round(time.Millisecond), err, rounds)
		deadline := time.Now().Add(30 * time.Second)
		for (tracerPid(tg.pid) != 0 || state(tg.pid) == 'T' || state(tg.pid) == 't') && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if tp, st := tracerPid(tg.pid), state(tg.pid); tp != 0 || st == 'T' || st == 't' {
			t.Fatalf("after the kill the writer is traced by %d, state %c", tp, st)
		}
		a := hotProgress(t, tg, tg.pid)
		if b := hotProgress(t, tg, tg.pid); b <= a {
			t.Fatalf("the writer does not write after the kill: sequence %d, then %d", a, b)
		}
	}
	full("last-base")
	hotProgress(t, tg, tg.pid)
	hotProgress(t, tg, tg.pid) // a page written since last-base
	dir := filepath.Join(ck, "last")
	st, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: dir, LeaveRunning: true, Parent: "../last-base", MaxFreeze: time.Microsecond})
	if err != nil {
		t.Fatal(err)
	}
	if st.Budget == nil || st.Budget.Rounds < 1 {
		t.Fatalf("increment with a budget: %+v, want pre-copy rounds", st.Budget)
	}
	checkBudgetImage(t, dir, st)
	restoreHot(t, tg, dir)
}
