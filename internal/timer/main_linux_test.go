package timer_test

import (
	"os"
	"testing"

	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	// Fds the test binary inherited must not leak into the test targets.
	_ = unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	code := m.Run()
	testutil.RemoveBuilds()
	os.Exit(code)
}
