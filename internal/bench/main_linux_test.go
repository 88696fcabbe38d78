package bench

import (
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) {
	// Fds the test binary inherited must not leak into the benchmarked
	// processes: rtcr would rightly refuse unknown pipes.
	_ = unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC)
	os.Exit(m.Run())
}
