package rtcr_test

import (
	"strings"
	"testing"
	"time"

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
	dir := tg.dump(false)
	tg.restore(dir)
	tg.fire()
	if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("shared open file after restore: exit %d, output:\n%s", code, tg.output())
	}
}
