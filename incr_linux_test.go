package rtcr_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/testutil"
	"github.com/rtcr/rtcr/internal/track"
)

// TestIncrementalExactPages: between checkpoints the writer touches a known
// set of pages; the increment holds exactly those pages of its region (the
// rest come from the parent), pages dropped with MADV_DONTNEED are in no
// image, and the newest increment restores to the right bytes.
func TestIncrementalExactPages(t *testing.T) {
	testutil.RequireRoot(t)
	w := startWriter(t, 256, 1)
	c1 := w.dump("1", "")
	if here, _ := w.regionPages(c1, w.pid); len(here) != 256 {
		t.Fatalf("full image holds %d region pages, want 256", len(here))
	}
	w.run("", "w 3 17 18 200")
	c2 := w.dump("2", "1")
	w.wantPages(c2, w.pid, 3, 17, 18, 200)
	if _, parents := w.regionPages(c2, w.pid); len(parents) != 252 {
		t.Fatalf("increment takes %d region pages from its parent, want 252", len(parents))
	}
	if c2.Parent == nil || c2.Parent.ID != c1.ID || c2.ChainLen != 1 || c2.FreezeNs <= 0 {
		t.Fatalf("increment's link %+v, chain %d, freeze %d; parent id %s", c2.Parent, c2.ChainLen, c2.FreezeNs, c1.ID)
	}
	w.run("", "w 5", "drop 10 2")
	c3 := w.dump("3", "2")
	w.wantPages(c3, w.pid, 5)
	here, parents := w.regionPages(c3, w.pid)
	if len(here)+len(parents) != 254 {
		t.Fatalf("after dropping 2 pages the image chain holds %d region pages, want 254", len(here)+len(parents))
	}
	w.restoreAndVerify(filepath.Join(w.ck, "3"))
}

// TestIncrementalChain10 restores the last of ten increments, each written
// with random pages (and drops), to the right bytes.
func TestIncrementalChain10(t *testing.T) {
	testutil.RequireRoot(t)
	w := startWriter(t, 512, 1)
	rng := rand.New(rand.NewSource(20261203))
	w.dump("0", "")
	for i := 1; i <= 10; i++ {
		var pages []int
		seen := map[int]bool{}
		cmd := "w"
		for k := 0; k < 1+rng.Intn(40); k++ {
			p := rng.Intn(w.npages)
			if !seen[p] {
				seen[p] = true
				pages = append(pages, p)
				cmd += fmt.Sprintf(" %d", p)
			}
		}
		lines := []string{cmd}
		if i%3 == 0 {
			lines = append(lines, fmt.Sprintf("drop %d 3", rng.Intn(w.npages-3)))
		}
		w.run("", lines...)
		c := w.dump(fmt.Sprint(i), fmt.Sprint(i-1))
		if c.ChainLen != i {
			t.Fatalf("image %d: chain of %d, want %d", i, c.ChainLen, i)
		}
		w.wantPages(c, w.pid, pages...)
	}
	w.restoreAndVerify(filepath.Join(w.ck, "10"))
}

// TestIncrementalMapChanges: between rounds the program unmaps, maps,
// moves (mremap), drops and mprotects parts of its region; new and moved
// mappings are saved whole, unmapped ones are absent, and the chain
// restores to the right bytes.
func TestIncrementalMapChanges(t *testing.T) {
	testutil.RequireRoot(t)
	w := startWriter(t, 256, 1)
	w.dump("1", "")
	w.run("", "unmap 100 8", "move 0 8 100", "prot 50 4 r", "w 60")
	c := w.dump("2", "1")
	w.wantPages(c, w.pid, 60, 100, 101, 102, 103, 104, 105, 106, 107)
	w.run("", "map 0 4", "w 1", "prot 50 4 rw", "w 51", "drop 70 1")
	c = w.dump("3", "2")
	// The new mapping's page 1 was written; pages 0, 2, 3 are zero.
	w.wantPages(c, w.pid, 1, 51)
	w.run("", "unmap 200 56", "w 101")
	c = w.dump("4", "3")
	w.wantPages(c, w.pid, 101) // the moved mapping is tracked since the last dump
	if here, parents := w.regionPages(c, w.pid); len(here)+len(parents) > 200 {
		t.Fatalf("unmapped pages still in the image: %d region pages", len(here)+len(parents))
	}
	w.restoreAndVerify(filepath.Join(w.ck, "4"))
}

// TestIncrementalThreads: four threads write the pages between
// checkpoints; the increment holds exactly those.
func TestIncrementalThreads(t *testing.T) {
	testutil.RequireRoot(t)
	w := startWriter(t, 256, 4)
	w.dump("1", "")
	w.run("", "w 0 1 2 3 64 65 130 255")
	c := w.dump("2", "1")
	w.wantPages(c, w.pid, 0, 1, 2, 3, 64, 65, 130, 255)
	w.run("", "w 9 10 11 12")
	c = w.dump("3", "2")
	w.wantPages(c, w.pid, 9, 10, 11, 12)
	w.restoreAndVerify(filepath.Join(w.ck, "3"))
}

// TestIncrementalForkedChild: a child forked after tracking began is saved
// whole in the next increment (and the copy of the parent's userfaultfd it
// inherited is not part of its image), then tracked itself.
func TestIncrementalForkedChild(t *testing.T) {
	testutil.RequireRoot(t)
	w := startWriter(t, 128, 1)
	w.dump("1", "")
	w.run("", "fork", "w 1")
	// The child ran the rest of that round too ("w 1" on its own copy):
	// its write must be done before the dump that starts its tracking.
	w.waitFor(fmt.Sprintf("\ncdone %d\n", w.round))
	c := w.dump("2", "1")
	w.wantPages(c, w.pid, 1)
	if len(c.Processes) != 2 {
		t.Fatalf("image holds %d processes, want the writer and its child", len(c.Processes))
	}
	child := c.Processes[1].Pid
	// Its new mapping is saved in full, except the pages it still shares
	// with the writer (all but page 1, which both wrote after the fork):
	// those name the writer's copy (copy-on-write sharing kept).
	if here, parents := w.regionPages(c, child); len(here)+len(parents) != 128 || len(here) < 1 || len(parents) < 64 || sharedWith(c, child, w.pid) < len(parents) {
		t.Fatalf("the new child's region: %d pages saved, %d held elsewhere (%d pages of it shared with the writer), want all 128, most shared",
			len(here), len(parents), sharedWith(c, child, w.pid))
	}
	for _, p := range c.Processes {
		for _, fd := range p.FDs {
			if fd.Num >= track.MinFd {
				t.Fatalf("pid %d: fd %d (%s) of rtcr's tracking is in the image", p.Pid, fd.Num, fd.Kind)
			}
		}
	}
	// The child follows ccmd-N from the round after the fork.
	w.send("c", w.round+1, "w 9")
	w.waitFor(fmt.Sprintf("cdone %d\n", w.round+1))
	w.run("", "w 8")
	c = w.dump("3", "2")
	w.wantPages(c, w.pid, 8)
	w.wantPages(c, child, 9)
	w.restoreAndVerify(filepath.Join(w.ck, "3"), child)
}

// TestIncrementalRefused: an increment of an untracked process, a broken
// chain (the parent replaced or removed) and an increment into the
// parent's own directory are refused; restoring a broken chain creates no
// process.
func TestIncrementalRefused(t *testing.T) {
	testutil.RequireRoot(t)
	w := startWriter(t, 64, 1)
	ctx := context.Background()
	// Not tracked yet.
	_, err := rtcr.Dump(ctx, rtcr.DumpOptions{Pid: w.pid, Dir: filepath.Join(w.ck, "x"), Parent: "../y", LeaveRunning: true})
	if err == nil {
		t.Fatal("increment of an image that does not exist was accepted")
	}
	full := rtcr.DumpOptions{Pid: w.pid, Dir: filepath.Join(w.ck, "0"), LeaveRunning: true}
	if _, err := rtcr.Dump(ctx, full); err != nil {
		t.Fatal(err)
	}
	_, err = rtcr.Dump(ctx, rtcr.DumpOptions{Pid: w.pid, Dir: filepath.Join(w.ck, "x"), Parent: "../0", LeaveRunning: true})
	if !errors.Is(err, track.ErrNoTracking) || !strings.Contains(err.Error(), "not tracked") {
		t.Fatalf("increment of an untracked process: %v", err)
	}
	w.dump("1", "")
	_, err = rtcr.Dump(ctx, rtcr.DumpOptions{Pid: w.pid, Dir: filepath.Join(w.ck, "1"), Parent: ".", LeaveRunning: true, TrackMem: true})
	if err == nil || !strings.Contains(err.Error(), "image directory itself") {
		t.Fatalf("increment into its parent's directory: %v", err)
	}
	w.run("", "w 2")
	w.dump("2", "1")
	w.run("", "w 3")
	w.dump("3", "2")
	w.kill()
	w.done = true
	// The middle link replaced by another image: checksum mismatch.
	mid := filepath.Join(w.ck, "2")
	saved := filepath.Join(w.ck, "2.saved")
	if err := os.Rename(mid, saved); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(w.ck, "0"), mid); err != nil {
		t.Fatal(err)
	}
	restoreRefused(t, w.pid, filepath.Join(w.ck, "3"), "has id")
	// The link missing.
	if err := os.RemoveAll(mid); err != nil {
		t.Fatal(err)
	}
	restoreRefused(t, w.pid, filepath.Join(w.ck, "3"), "parent 1")
	// The parent's manifest rewritten: same id, another checksum.
	if err := os.Rename(saved, mid); err != nil {
		t.Fatal(err)
	}
	c, err := image.ReadManifest(mid)
	if err != nil {
		t.Fatal(err)
	}
	c.Created++
	if err := image.WriteManifest(mid, c); err != nil {
		t.Fatal(err)
	}
	restoreRefused(t, w.pid, filepath.Join(w.ck, "3"), "changed since")
}

// restoreRefused restores dir, expects an error naming want, and checks
// that no process was created with the image's pid.
func restoreRefused(t *testing.T, pid int, dir, want string) {
	t.Helper()
	_, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("restore of a broken chain: %v, want an error naming %q", err, want)
	}
	if !pidFree(pid) {
		t.Fatalf("refused restore left a process with pid %d", pid)
	}
	t.Logf("refused: %v", err)
}

// TestTrackingEnds: a dump without TrackMem of a tracked process ends the
// tracking: the userfaultfd is gone from the process, its mappings are no
// longer registered, its state file is removed, and a later increment is
// refused.
func TestTrackingEnds(t *testing.T) {
	testutil.RequireRoot(t)
	w := startWriter(t, 64, 1)
	w.dump("1", "")
	st, err := track.Load(w.pid)
	if err != nil || st == nil || st.Fd < track.MinFd {
		t.Fatalf("tracking state after a --track-mem dump: %+v, %v", st, err)
	}
	if !hasUffdWP(t, w.pid) {
		t.Fatal("no mapping registered for write-protect tracking")
	}
	w.run("", "w 4")
	// An increment without --track-mem: the last of its chain.
	last, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: w.pid, Dir: filepath.Join(w.ck, "2"), Parent: "../1", LeaveRunning: true})
	if err != nil {
		t.Fatal(err)
	}
	if last.ParentPages == 0 {
		t.Fatal("the last increment took no pages from its parent")
	}
	if _, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%d", w.pid, st.Fd)); err == nil {
		t.Fatalf("fd %d still open in the writer", st.Fd)
	}
	if hasUffdWP(t, w.pid) {
		t.Fatal("mappings still registered after tracking ended")
	}
	if st, _ := track.Load(w.pid); st != nil {
		t.Fatalf("tracking state left: %+v", st)
	}
	_, err = rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: w.pid, Dir: filepath.Join(w.ck, "3"), Parent: "../2", LeaveRunning: true, TrackMem: true})
	if !errors.Is(err, track.ErrNoTracking) {
		t.Fatalf("increment after tracking ended: %v", err)
	}
	w.run("", "w 5")
	w.dump("4", "")
	w.restoreAndVerify(filepath.Join(w.ck, "4"))
}

// TestLastIncrementExact: an increment without --track-mem, the last of
// its chain, finds the written pages without protecting them again
// (mem.Incr.Last): it holds exactly the pages written since its parent,
// and restores to the right bytes; a mapping made since the parent (not
// registered for tracking) is saved whole.
func TestLastIncrementExact(t *testing.T) {
	testutil.RequireRoot(t)
	w := startWriter(t, 128, 1)
	w.dump("1", "")
	w.run("", "w 3 17 18 100", "drop 40 2", "map 60 4", "w 61")
	dir := filepath.Join(w.ck, "2")
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: w.pid, Dir: dir, Parent: "../1", LeaveRunning: true}); err != nil {
		t.Fatal(err)
	}
	c, err := image.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	// Of the new mapping over pages 60-63 only 61 was written; 40-41 are
	// dropped.
	w.wantPages(c, w.pid, 3, 17, 18, 61, 100)
	if here, parents := w.regionPages(c, w.pid); len(here)+len(parents) != 123 {
		t.Fatalf("the chain holds %d region pages, want 123", len(here)+len(parents))
	}
	w.restoreAndVerify(dir)
}

// hasUffdWP reports whether a mapping of pid carries the "uw" VmFlag.
func hasUffdWP(t *testing.T, pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmFlags:") && strings.Contains(l+" ", " uw ") {
			return true
		}
	}
	return false
}

// TestFailedIncrementRefusesItsParent: an increment that fails after its
// scan re-protected the written pages must not leave the parent usable
// for another increment (those pages would be missing from it): the next
// increment against it is refused, and a full dump starts over.
func TestFailedIncrementRefusesItsParent(t *testing.T) {
	testutil.RequireRoot(t)
	w := startWriter(t, 64, 1)
	w.dump("1", "")
	w.run("", "w 1 2")
	rtcr.SetDumpMemoryHookForTest(func(int) error { return errors.New("injected failure") })
	_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: w.pid, Dir: filepath.Join(w.ck, "2"), Parent: "../1", LeaveRunning: true, TrackMem: true})
	rtcr.SetDumpMemoryHookForTest(nil)
	if err == nil || !strings.Contains(err.Error(), "injected failure") {
		t.Fatalf("dump with a failing hook: %v", err)
	}
	if _, err := os.Stat(filepath.Join(w.ck, "2", image.ManifestName)); err == nil {
		t.Fatal("the failed increment left a manifest")
	}
	_, err = rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: w.pid, Dir: filepath.Join(w.ck, "2"), Parent: "../1", LeaveRunning: true, TrackMem: true})
	if !errors.Is(err, track.ErrNoTracking) || !strings.Contains(err.Error(), "did not complete") {
		t.Fatalf("increment against the parent of a failed one: %v", err)
	}
	w.run("", "w 3")
	w.dump("3", "")
	w.run("", "w 4")
	c := w.dump("4", "3")
	w.wantPages(c, w.pid, 4)
	w.restoreAndVerify(filepath.Join(w.ck, "4"))
}

// TestIncrementalRun: increments of a tree started by `rtcr run`, dumped
// through `rtcr run`'s pid (its namespace's init and the program are
// tracked); the last increment kills the tree and restores to the right
// bytes.
func TestIncrementalRun(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildRtcr(t), "run", "--", testutil.BuildC(t, "dirtywriter", false), "64")
	testutil.WaitForFile(t, tg.out, "ready ", 30*time.Second)
	var base uint64
	if _, err := fmt.Sscanf(tg.output(), "ready %x", &base); err != nil {
		t.Fatalf("writer output %q: %v", tg.output(), err)
	}
	w := &writer{target: tg, base: base, npages: 64, stamps: make([]int64, 64), ck: t.TempDir()}
	for p := range w.stamps {
		w.stamps[p] = int64(1000000 + p%7)
	}
	c := w.dump("1", "")
	if !c.PidNS || len(c.Processes) != 2 {
		t.Fatalf("image of the run: pid namespace %v, %d processes", c.PidNS, len(c.Processes))
	}
	prog := c.Processes[1].Pid // 2, inside the namespace
	w.run("", "w 5 6")
	c = w.dump("2", "1")
	w.wantPages(c, prog, 5, 6)
	w.run("", "w 7")
	dir := filepath.Join(w.ck, "3")
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: dir, Parent: "../2"}); err != nil {
		t.Fatal(err)
	}
	c, err := image.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	w.wantPages(c, prog, 7)
	tg.waitOriginal()
	st, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	tg.pid, tg.done = st.Pid, false // the restored init is our child
	w.send("", w.round+1, "verify")
	want := fmt.Sprintf("OK %d\n", w.sum())
	if code := tg.wait(60 * time.Second); code != 0 || !strings.Contains(tg.output(), want) {
		t.Fatalf("restored run: exit %d, want %q in its output:\n%s", code, want, tg.output())
	}
}
