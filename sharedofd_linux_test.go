package rtcr_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestSharedOpenFile checkpoints testdata/sharedofd.c, a file open once
// as fd 3, dup'd to fd 4 and inherited by a forked child, kills the tree
// and restores it: the three fds are one open file description again, so
// a read on fd 4 moves fd 3, O_NONBLOCK set on one shows on the other, and
// the child sees the parent's offset and flags and its seek moves the
// parent's fds.
func TestSharedOpenFile(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "sharedofd", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("shared open file")
}

// TestSharedOpenFileRun is TestSharedOpenFile in an `rtcr run` tree (a
// new pid namespace): the child's fds are taken from the parent's stub by
// its pid in the namespace.
func TestSharedOpenFileRun(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildRtcr(t), "run", "--", testutil.BuildC(t, "sharedofd", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	dir := t.TempDir() + "/img"
	if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: dir}); err != nil {
		t.Fatalf("dump: %v", err)
	}
	tg.waitOriginal()
	st, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	tg.pid, tg.done = st.Pid, false // the restored init is our child now
	tg.fire()
	if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("shared open file after restore in a pid namespace: exit %d, output:\n%s", code, tg.output())
	}
}
