package rtcr_test

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestMigratePreCopyFullImage: a full image copied while the tree runs
// (DumpOptions.FullPreCopy) of a writer: the tree is frozen briefly to
// arm the tracking, round 0 copies every page while it writes, and the
// freeze copies only what was written after the last round. The image is
// full (no parent), an increment against it follows, and the increment
// restores with every page right (the writer checks its own table).
func TestMigratePreCopyFullImage(t *testing.T) {
	testutil.RequireRoot(t)
	tg := startHot(t, 16384, 0, 200, false) // 64 MiB, all written again and again
	ck := t.TempDir()
	full := filepath.Join(ck, "1")
	st, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: full, LeaveRunning: true, TrackMem: true,
		MaxFreeze: time.Microsecond, FullPreCopy: true})
	if err != nil {
		t.Fatal(err)
	}
	b := st.Budget
	t.Logf("full image: frozen %v to arm, %v at the end; %d pages pre-copied (%d rounds after round 0), %d in the freeze; %s",
		b.ArmFreeze, st.Freeze, b.PreCopiedPages, b.Rounds, b.FrozenPages, b.Over)
	if b.ArmFreeze <= 0 || b.PreCopiedPages < 16384 {
		t.Fatalf("budget %+v: want an arming freeze and every page copied in round 0", b)
	}
	if st.Parent != "" {
		t.Fatalf("parent %q, want a full image", st.Parent)
	}
	c, err := image.ReadManifest(full)
	if err != nil {
		t.Fatal(err)
	}
	if c.Parent != nil || c.ChainLen != 0 {
		t.Fatalf("the image names a parent: %+v", c.Parent)
	}
	checkBudgetImage(t, full, st)
	hotProgress(t, tg, tg.pid)
	incr := filepath.Join(ck, "2")
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: incr, LeaveRunning: true, TrackMem: true, Parent: "../1"}); err != nil {
		t.Fatalf("increment against the pre-copied full image: %v", err)
	}
	restoreHot(t, tg, incr)
}

// TestKillPreCopyFullDump SIGKILLs `rtcr dump --track-mem -R
// --max-freeze` without --parent (a full image copied while the writer
// runs) at random moments: while arming, during round 0, the rounds or
// the freeze. Each time the writer runs on, untraced, not stopped, and
// writes (its tracking is asynchronous: nothing waits for a dead rtcr).
// Then a full pre-copied dump completes and its increment restores right.
func TestKillPreCopyFullDump(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildRtcr(t)
	tg := startHot(t, 16384, 0, 0, false) // 64 MiB written as fast as it can
	ck := t.TempDir()
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	span := 600 * time.Millisecond
	for i := 0; i < 8; i++ {
		hotProgress(t, tg, tg.pid)
		cmd := exec.Command(bin, "dump", "--pid", strconv.Itoa(tg.pid), "--dir", filepath.Join(ck, fmt.Sprintf("k%d", i)),
			"-R", "--track-mem", "--max-freeze", "1us", "-v3")
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
		t.Logf("kill %d after %v: %v; armed: %v, rounds logged: %d", i, time.Since(startAt).Round(time.Millisecond), err,
			strings.Contains(out.String(), "pre-copy armed"), strings.Count(out.String(), "pre-copy round"))
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
	full := filepath.Join(ck, "last-full")
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: full, LeaveRunning: true, TrackMem: true,
		MaxFreeze: time.Microsecond, FullPreCopy: true}); err != nil {
		t.Fatal(err)
	}
	hotProgress(t, tg, tg.pid)
	incr := filepath.Join(ck, "last")
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: incr, LeaveRunning: true, Parent: "../last-full"}); err != nil {
		t.Fatal(err)
	}
	restoreHot(t, tg, incr)
}
