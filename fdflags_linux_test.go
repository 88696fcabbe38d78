package rtcr_test

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestFDStatusFlags checkpoints testdata/fdflags.c, kills it and restores
// it; the program then checks its fds: O_NONBLOCK on one pipe end and not
// the other, O_APPEND on a file (a write after lseek(0) appends), O_ASYNC
// with F_SETOWN_EX and F_SETSIG on a pipe whose next byte must bring the
// signal with si_fd set, O_NONBLOCK on an epoll fd that reports the pipe
// with its data, an eventfd's counter in semaphore mode.
func TestFDStatusFlags(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "fdflags", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("fd flags")
}

// TestFDStateRefused: a dump of a process with an fd owned (F_SETOWN_EX)
// by a process outside the tree is refused naming the fd and the field,
// and the process runs on with its fds intact. (Leases, refused here
// before, are restored: TestLeaseRoundTrip.)
func TestFDStateRefused(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "fdflags", false)
	tests := []struct{ arg, want string }{
		{"extowner", fmt.Sprintf("owner (F_GETOWN_EX) is process %d, outside the dumped tree", os.Getpid())},
	}
	for _, tc := range tests {
		t.Run(tc.arg, func(t *testing.T) {
			tg := start(t, bin, "trigger", tc.arg)
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			tg.dumpRefused("fd 10 (", tc.want)
			tg.runsOnOK()
		})
	}
}
