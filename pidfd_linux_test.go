package rtcr_test

import (
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestPidfd checkpoints testdata/pidfds.c, which holds a pidfd on itself
// (PIDFD_NONBLOCK) and one on its child (zdtm's pidfd_self), and restores
// it: both name the restored processes (fdinfo, pidfd_send_signal, and
// waitid through the child's pidfd gets its exit status).
func TestPidfd(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "pidfds", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("pidfds")
}

// TestPidfdRun is TestPidfd in an `rtcr run` tree: the pidfds name the
// processes by their pids in the new pid namespace.
func TestPidfdRun(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildRtcr(t), "run", "--", testutil.BuildC(t, "pidfds", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	dir := tg.dump(false)
	st, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir})
	if err != nil {
		t.Fatalf("restore: %v", err)
	}
	tg.pid, tg.done = st.Pid, false
	tg.fire()
	if code := tg.wait(10 * time.Second); code != 0 || !strings.Contains(tg.output(), "OK\n") {
		t.Fatalf("pidfds after restore in a pid namespace: exit %d, output:\n%s", code, tg.output())
	}
}
