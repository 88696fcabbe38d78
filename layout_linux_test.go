package rtcr_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

// TestGhostGroupRoundTrip: a child (live, or a zombie) left in a process
// group whose leader has exited comes back in that group (zdtm
// zombie01): the restore recreates the leader for a moment (a ghost
// with the group's id), and the ghost is gone after (reaped by its
// parent, with no SIGCHLD left pending). The dump used to refuse it.
func TestGhostGroupRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "orphangroup", false)
	for _, mode := range []string{"live", "zombie"} {
		t.Run(mode, func(t *testing.T) {
			tg := start(t, bin, "trigger", mode)
			testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
			dir := tg.dump(false)
			tg.restore(dir)
			children, err := procfs.ReadChildren(tg.pid)
			if err != nil || len(children) != 1 {
				t.Fatalf("restored %d has children %v (%v), want one (no ghost left)", tg.pid, children, err)
			}
			if mode == "live" {
				// (A zombie's own exit at the restore signals it.)
				if p := shdPnd(t, tg.pid); p&(1<<(unix.SIGCHLD-1)) != 0 {
					t.Fatalf("SIGCHLD pending in the restored %d (ShdPnd %#x): the ghost's exit signalled it", tg.pid, p)
				}
			}
			tg.fire()
			if code := tg.wait(60 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
				t.Fatalf("after restore: exit %d, output:\n%s", code, tg.output())
			}
		})
	}
}

// shdPnd returns the signals pending for process pid as a whole.
func shdPnd(t *testing.T, pid int) uint64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "ShdPnd:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no ShdPnd in /proc/%d/status", pid)
	return 0
}

// TestSessionBeforeSetsidRoundTrip: a child left in the session its
// parent had before the parent's setsid comes back there (created before
// the parent's setsid), its parent leading its own; the dump used to
// refuse it.
func TestSessionBeforeSetsidRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "orphangroup", false), "trigger", "session")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	tg.roundTripOK("session layout")
}

// TestGhostSessionRoundTrip: a child left in a session whose leader has
// exited (it cloned the child with CLONE_PARENT, zdtm session02's layout)
// comes back in that session: a ghost leader with the session's id makes
// it and creates the child with CLONE_PARENT, and is gone after (reaped,
// no SIGCHLD left pending in the parent). The dump used to refuse it.
func TestGhostSessionRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "orphangroup", false), "trigger", "ghostsession")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	dir := tg.dump(false)
	tg.restore(dir)
	children, err := procfs.ReadChildren(tg.pid)
	if err != nil || len(children) != 1 {
		t.Fatalf("restored %d has children %v (%v), want one (no ghost left)", tg.pid, children, err)
	}
	if p := shdPnd(t, tg.pid); p&(1<<(unix.SIGCHLD-1)) != 0 {
		t.Fatalf("SIGCHLD pending in the restored %d (ShdPnd %#x): the ghost's exit signalled it", tg.pid, p)
	}
	tg.fire()
	if code := tg.wait(60 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("after restore: exit %d, output:\n%s", code, tg.output())
	}
}

// TestGroupLayoutRefusedAtDump: a session whose leader has exited with
// processes under two parents (one reparented to a subreaper) cannot be
// made again; the dump refuses it, naming the session, before reading
// any process, and the tree runs on. (The dump used to succeed and kill
// the tree, and only the restore refused; then it refused only after
// reading every process.)
func TestGroupLayoutRefusedAtDump(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "orphangroup", false), "trigger", "ghosttwo")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	var l bytes.Buffer
	_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&l, nil))})
	if err == nil || !strings.Contains(err.Error(), "whose leader is gone, has processes under parents") {
		t.Fatalf("dump error %v, want the session layout refused", err)
	}
	// Refused before any process is read or injected into (it used to
	// be refused once all were read: minutes for a tree of hundreds).
	if _, ok := loggedSteps(t, l.String(), tg.pid)["fds"]; ok {
		t.Fatalf("process %d was read before the refusal; log:\n%s", tg.pid, l.String())
	}
	tg.runsOnOK()
}
