package rtcr_test

import (
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// TestUnixShutdownRoundTrip checkpoints testdata/unixshut.c holding unix
// stream, datagram and seqpacket sockets shut down one way or both, with
// bytes queued before the shutdown, and sockets whose peer was closed
// after writing to them (zdtm sockets01, sockets02): after the restore
// each sends, receives and reaches end of file exactly as before. The
// dump used to refuse every shut-down socket.
func TestUnixShutdownRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "unixshut", false), "trigger")
	testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
	tg.roundTripOK("shut-down sockets")
}
