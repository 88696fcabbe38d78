package rtcr_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/cred"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestSeccompRoundTrip: threads under seccomp come back under it. Strict
// mode is set again in the thread that had it (and not in the other);
// filters come back in order, with their flags, shared by both threads
// (whether the helper inherited them or got them by TSYNC), and keep
// working from inside: getppid and setresuid fail with the filters'
// errnos. The restore's own injected setresuid must not meet the filter
// (seccomp is suspended while rtcr injects), and a process that installed
// its filter as root and then dropped every privilege gets it back (the
// filter is installed before the credentials). The dump used to refuse
// every one of them.
func TestSeccompRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "seccomp", false)
	for _, mode := range []string{"strict", "filter", "dropped", "tsync"} {
		t.Run(mode, func(t *testing.T) {
			tg := start(t, bin, "trigger", mode)
			if mode == "dropped" {
				// Uid 65534 must reach the trigger.
				for _, d := range []string{tg.dir, filepath.Dir(tg.dir)} {
					if err := os.Chmod(d, 0o755); err != nil {
						t.Fatal(err)
					}
				}
			}
			testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
			dir := tg.dump(false)
			tg.restore(dir)
			tg.fire()
			if code := tg.wait(60 * time.Second); code != 0 {
				t.Fatalf("restored target exited %d; output:\n%s", code, tg.output())
			}
			if out := tg.output(); !strings.Contains(out, "helper ok\n") || !strings.Contains(out, "OK\n") {
				t.Fatalf("restored target's checks failed; output:\n%s", out)
			}
		})
	}
}

// TestSeccompRefused: seccomp layouts a restore could not bring back the
// same are refused before anything is injected, naming the thread or the
// filter, and the target runs on: threads with different filters, a
// thread with filters beside one without, a filter that hands calls to a
// user-space listener.
func TestSeccompRefused(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "seccomp", false)
	tests := []struct{ mode, want string }{
		{"differ", "has other seccomp filters than thread"},
		{"mainonly", "has no seccomp filter (mode 0)"},
		{"notify", "returns SECCOMP_RET_USER_NOTIF"},
	}
	for _, tc := range tests {
		t.Run(tc.mode, func(t *testing.T) {
			tg := start(t, bin, "trigger", tc.mode)
			testutil.WaitForFile(t, tg.out, "ready\n", 30*time.Second)
			_, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: tg.pid, Dir: t.TempDir()})
			if !errors.Is(err, cred.ErrSeccomp) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("dump error %v, want %v naming %q", err, cred.ErrSeccomp, tc.want)
			}
			tg.runsOnOK()
		})
	}
}
