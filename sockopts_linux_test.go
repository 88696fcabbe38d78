package rtcr_test

import (
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestSockOptsRoundTrip: socket options the dump used to refuse, or did
// not read at all, come back on an unconnected TCP socket, a bound UDP
// socket and an IPv6 TCP socket: SO_MARK, SO_BINDTODEVICE (the name and
// its length as getsockopt gives them), SO_NO_CHECK, SO_PRIORITY 7,
// SO_ZEROCOPY, SO_MAX_PACING_RATE, with SO_DONTROUTE, SO_RCVLOWAT,
// SO_OOBINLINE and SO_KEEPALIVE beside them (zdtm sock_opts00,
// sock_opts01). The program compares every value with the one it read
// before the dump.
func TestSockOptsRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "sockopts", false), "trigger", "set")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	tg.roundTripOK("socket options")
}

// TestSockOptsRefused: an option rtcr still does not restore
// (TCP_WINDOW_CLAMP of an unconnected TCP socket) is refused naming it,
// and the process runs on with it.
func TestSockOptsRefused(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "sockopts", false), "trigger", "refused")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	tg.dumpRefused("fd 3 (", "TCP_WINDOW_CLAMP")
	tg.runsOnOK()
}
