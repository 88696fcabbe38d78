package testutil

import (
	"testing"

	"golang.org/x/sys/unix"
)

// Main runs a package's tests the way every rtcr test binary needs: fds it
// inherited (from a CI runner, a shell …) are marked close-on-exec first,
// so they cannot leak into test targets, whose dump would rightly refuse
// unknown pipes and sockets; the programs built for the tests are removed
// afterwards. Use it as: func TestMain(m *testing.M) { os.Exit(testutil.Main(m)) }
func Main(m *testing.M) int {
	_ = unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	code := m.Run()
	RemoveBuilds()
	return code
}
