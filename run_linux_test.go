package rtcr_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/rtcr/rtcr"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/testutil"
)

// TestRunNamespace starts a program with `rtcr run` (new pid and time
// namespaces), checkpoints it through the run's pid, kills it, and
// restores it into new namespaces: the program keeps pid 2 and measures
// CLOCK_MONOTONIC and CLOCK_BOOTTIME across the downtime, which by default
// the clocks count and with NoClockJump they do not; never backwards.
func TestRunNamespace(t *testing.T) {
	testutil.RequireRoot(t)
	const downtime = 1500 * time.Millisecond
	for _, noJump := range []bool{false, true} {
		t.Run(fmt.Sprintf("no-clock-jump=%v", noJump), func(t *testing.T) {
			tg := start(t, testutil.BuildRtcr(t), "run", "--", testutil.BuildC(t, "clock", false), "trigger")
			testutil.WaitForFile(t, tg.out, "ready pid 2\n", 10*time.Second)
			// rtcr's init carries a sigreturn gadget: injection into it is
			// kill-safe from the first call.
			init := nsInit(t, tg.pid)
			if _, ok, err := ptrace.FindSigreturnGadget(init); err != nil || !ok {
				t.Errorf("rtcr's init %d has no sigreturn gadget (%v)", init, err)
			}
			// Round 1 dumps through the pid of `rtcr run`, round 2 through
			// the restored program's own pid.
			pid := tg.pid
			for round := 0; round < 2; round++ {
				dir := fmt.Sprintf("%s/img%d", t.TempDir(), round)
				if _, err := rtcr.Dump(context.Background(), rtcr.DumpOptions{Pid: pid, Dir: dir}); err != nil {
					t.Fatalf("dump %d: %v", round, err)
				}
				if round == 0 {
					if code := tg.waitOriginal(); code != 128+9 {
						t.Errorf("rtcr run exited %d after its tree was killed, want %d", code, 128+9)
					}
				} else {
					tg.reap() // the restored init, killed by the dump
				}
				time.Sleep(downtime)
				st, err := rtcr.Restore(rtcr.RestoreOptions{Dir: dir, NoClockJump: noJump})
				if err != nil {
					t.Fatalf("restore %d: %v", round, err)
				}
				if st.Program == 0 || st.Program == st.Pid {
					t.Fatalf("restore stats %+v: no program pid", st)
				}
				tg.pid, tg.done = st.Pid, false // the restored init is our child now
				pid = st.Program
			}
			tg.fire()
			if code := tg.wait(10 * time.Second); code != 0 {
				t.Fatalf("clock program after restore: exit %d, output:\n%s", code, tg.output())
			}
			var mono, boot, back, seen int
			out := tg.output()
			line := out[strings.LastIndex(out, "mono_max_ms"):]
			if _, err := fmt.Sscanf(line, "mono_max_ms %d boot_max_ms %d backwards %d pid %d", &mono, &boot, &back, &seen); err != nil {
				t.Fatalf("output %q: %v", out, err)
			}
			t.Logf("largest clock steps: monotonic %d ms, boottime %d ms (downtime %v)", mono, boot, downtime)
			if back != 0 || seen != 2 {
				t.Fatalf("backwards steps %d, pid %d (want 0, 2)", back, seen)
			}
			lo, hi := int(downtime/time.Millisecond), int(downtime/time.Millisecond)+5000
			if noJump {
				lo, hi = 0, int(downtime/time.Millisecond)/2
			}
			for _, v := range []int{mono, boot} {
				if v < lo || v > hi {
					t.Errorf("largest clock step %d ms, want within [%d, %d]", v, lo, hi)
				}
			}
		})
	}
}
