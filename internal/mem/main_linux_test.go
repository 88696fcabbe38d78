package mem_test

import (
	"os"
	"testing"

	"github.com/rtcr/rtcr/internal/testutil"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	// Fds the test binary inherited (from a CI runner, a shell …) must not
	// leak into the test targets: their dump would meet pipes and sockets
	// the round trip does not expect.
	_ = unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	code := m.Run()
	testutil.RemoveBuilds()
	os.Exit(code)
}
