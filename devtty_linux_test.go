package rtcr_test

import (
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestDevTTYRoundTrip: an fd on /dev/tty held by a session leader whose
// controlling terminal is a pty pair of the tree comes back reaching the
// new pair's slave (zdtm pty00): it is /dev/tty, TIOCGDEV names the slave
// and what is written on it reaches the master. The dump used to refuse it
// as an unknown character device.
func TestDevTTYRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "devtty", false), "trigger", "own")
	t.Cleanup(tg.fire) // the child exits too, whatever happened
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	tg.roundTripOK("/dev/tty fd")
}

// TestDevTTYLostRefused: an fd on /dev/tty whose terminal is no longer the
// process's controlling terminal is refused naming the fd: after a restore
// it would reach another terminal.
func TestDevTTYLostRefused(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "devtty", false), "trigger", "lost")
	t.Cleanup(tg.fire) // the child exits too, whatever happened
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	tg.dumpRefused("fd 10 (/dev/tty)", "the process's controlling terminal is 0:0")
	tg.runsOnOK()
}
