package rtcr_test

import (
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestNamespaceFD: fds on the files of the namespaces the process is in
// (/proc/self/ns/net, uts, pid) come back on the same namespaces, with
// their close-on-exec flag, and setns takes them (zdtm proc-self). The
// dump used to refuse them.
func TestNamespaceFD(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "nsfd", false), "trigger", "own")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	tg.roundTripOK("namespace fds")
}

// TestNamespaceFDRefused: an fd on a namespace the process is not in (a
// UTS namespace kept alive only by the fd) is refused naming the fd, and
// the process runs on.
func TestNamespaceFDRefused(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "nsfd", false), "trigger", "other")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	tg.dumpRefused("fd 5 (uts:[", "not the namespace the process is in")
	tg.runsOnOK()
}
