package rtcr_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestGroupLayoutRefusedAtDump: a child in a process group whose leader
// has exited cannot be put back in it; the dump refuses it, naming the
// group, and the tree runs on. (The dump used to succeed and kill the
// tree, and only the restore refused.)
func TestGroupLayoutRefusedAtDump(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "orphangroup", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), "has no leader in the tree") {
		t.Fatalf("dump error %v, want the group layout refused", err)
	}
	tg.runsOnOK()
}
