package rtcr_test

import (
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestUnixPairRoundTrip checkpoints testdata/unixpair.c holding a stream
// socket pair with bytes queued in both directions, a seqpacket pair with
// two queued messages (SO_PASSCRED on the sending end) and a datagram
// pair shared with a forked child, kills the tree and restores it: each
// end then reads exactly what was queued to it, the seqpacket messages
// keep their boundaries, SO_PASSCRED is set where it was, and the parent
// and the child talk over their pair again.
func TestUnixPairRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "unixpair", false), "trigger", "pairs")
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("socket pairs")
}

// TestUnixSocketRefused: a dump of a process holding a socket pair with an
// fd in flight (SCM_RIGHTS) is refused naming the fd, and the process runs
// on with its sockets intact (the fd in flight is still there after the
// refused dump). Named sockets: TestUnixNamedRoundTrip; a peer outside the
// tree: TestExternalInheritSocket.
func TestUnixSocketRefused(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "unixpair", false)
	tests := []struct{ arg, fd, want string }{
		{"rights", "fd 4 (", "carry 1 file descriptors (SCM_RIGHTS"},
	}
	for _, tc := range tests {
		t.Run(tc.arg, func(t *testing.T) {
			tg := start(t, bin, "trigger", tc.arg)
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			tg.dumpRefused(tc.fd, tc.want)
			tg.runsOnOK()
		})
	}
}
