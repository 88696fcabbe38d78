package rtcr_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/cred"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestSeccompRefused: a process whose main thread is in seccomp strict mode
// or has a seccomp filter is refused before anything is injected, naming
// the thread, and runs on. (Strict mode used to kill the target at the
// first injected mmap; a filter was dropped silently.)
func TestSeccompRefused(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "seccomp", false)
	tests := []struct{ mode, want string }{
		{"strict", "is in seccomp strict mode"},
		{"filter", "has a seccomp filter (mode 2)"},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			tg := start(t, bin, "trigger", tc.mode)
			testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
			_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: t.TempDir()})
			if !errors.Is(err, cred.ErrSeccomp) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("dump error %v, want %v naming %q", err, cred.ErrSeccomp, tc.want)
			}
			tg.runsOnOK()
		})
	}
}
