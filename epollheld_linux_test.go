package rtcr_test

import (
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestEpollHeldWatch checkpoints testdata/epollheld.c, an epoll whose
// watched fds were closed while the files stay open (a dup in the same
// process, a forked child's copy) or whose fd number now names another
// watched file, kills the tree and restores it: a byte written to each
// pipe brings exactly one event with that watch's data.
func TestEpollHeldWatch(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "epollheld", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("epoll watches of closed fds")
}
