package rtcr_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/testutil"
	"github.com/rtcr/rtcr/internal/tree"
)

// TestLeaderExitRefused dumps testdata/leaderexit.c, a process whose main
// thread ended with pthread_exit while another thread runs on (zdtm's
// pthread02): as the root, and as a child of the root, where it looked
// like a zombie and was dumped as one, its thread lost. Both are refused
// naming the process and its running thread, before anything is stopped
// or killed: the program then finishes on its own.
func TestLeaderExitRefused(t *testing.T) {
	testutil.RequireRoot(t)
	for _, mode := range []string{"root", "child"} {
		t.Run(mode, func(t *testing.T) {
			tg := start(t, testutil.BuildC(t, "leaderexit", false), "trigger", mode)
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: t.TempDir()})
			if !errors.Is(err, tree.ErrUnsupported) || !strings.Contains(err.Error(), "leader thread exited (pthread_exit) while threads") {
				t.Fatalf("dump error %v, want tree.ErrUnsupported naming the exited leader", err)
			}
			tg.runsOnOK()
		})
	}
}
