package rtcr_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestGroupLayoutRefusedAtDump: a child in a process group whose leader
// has exited cannot be put back in it; the dump refuses it, naming the
// group, before reading any process, and the tree runs on. (The dump used
// to succeed and kill the tree, and only the restore refused; then it
// refused only after reading every process.)
func TestGroupLayoutRefusedAtDump(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "orphangroup", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	var l bytes.Buffer
	_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(&l, nil))})
	if err == nil || !strings.Contains(err.Error(), "has no leader in the tree") {
		t.Fatalf("dump error %v, want the group layout refused", err)
	}
	// Refused before any process is read or injected into (it used to
	// be refused once all were read: minutes for a tree of hundreds).
	if _, ok := loggedSteps(t, l.String(), tg.pid)["fds"]; ok {
		t.Fatalf("process %d was read before the refusal; log:\n%s", tg.pid, l.String())
	}
	tg.runsOnOK()
}
