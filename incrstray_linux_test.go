package rtcr_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/testutil"
	"github.com/rtcr/rtcr/internal/track"
)

// TestStrayUffdClosed stops a tracked dump between the injected
// userfaultfd and the dup3 that moves it to its high fd, as an rtcr
// killed there would (the fd stays at the lowest free number, the state
// file names it): a Load meanwhile keeps the state naming it, the next
// tracked dump recognises it as rtcr's, closes it, and tracking works
// from there on.
func TestStrayUffdClosed(t *testing.T) {
	testutil.RequireRoot(t)
	w := startWriter(t, 64, 1)
	before := uffds(t, w.pid)
	if len(before) != 0 {
		t.Fatalf("writer has userfaultfds %v before any dump", before)
	}
	errKilled := errors.New("killed here (test)")
	track.SetCreateHookForTest(func() error { return errKilled })
	_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: w.pid, Dir: filepath.Join(w.ck, "killed"), LeaveRunning: true, TrackMem: true})
	track.SetCreateHookForTest(nil)
	if !errors.Is(err, errKilled) {
		t.Fatalf("dump with the hook: %v, want the hook's error", err)
	}
	stray := uffds(t, w.pid)
	if len(stray) != 1 || stray[0] >= track.MinFd {
		t.Fatalf("after the interrupted dump the writer has userfaultfds %v, want one at a low fd", stray)
	}
	w.run("", "w 4 5 6")
	// Whoever loads the state meanwhile (a refused increment, another
	// rtcr's sweep) finds no tracking and keeps the file naming the stray.
	if st, err := track.Load(w.pid); st != nil || err != nil {
		t.Fatalf("tracking state of the interrupted dump: %+v %v, want none", st, err)
	}
	if track.LoadStray(w.pid) != stray[0] {
		t.Fatalf("after a Load the state no longer names the stray fd %d", stray[0])
	}
	w.dump("full", "")
	if got := uffds(t, w.pid); len(got) != 1 || got[0] < track.MinFd {
		t.Fatalf("after the next dump the writer has userfaultfds %v, want only rtcr's at ≥ %d (the stray at %d closed)", got, track.MinFd, stray[0])
	}
	w.run("", "w 1 2 3")
	c := w.dump("incr", "full")
	w.wantPages(c, w.pid, 1, 2, 3)
	w.restoreAndVerify(filepath.Join(w.ck, "incr"))
}

// uffds returns the fd numbers of pid that are userfaultfds.
func uffds(t *testing.T, pid int) []int {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, e := range ents {
		if l, err := os.Readlink(filepath.Join(dir, e.Name())); err == nil && l == "anon_inode:[userfaultfd]" {
			n, _ := strconv.Atoi(e.Name())
			out = append(out, n)
		}
	}
	return out
}
