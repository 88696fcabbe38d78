package timer_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/testutil"
	"github.com/rtcr/rtcr/internal/timer"
	"golang.org/x/sys/unix"
)

// sparse are timers with ids far apart, of every notification kind; the
// SIGEV_THREAD_ID one gets the stub's tid. The itimers exercise all three.
func sparse(tid int) ([]image.Itimer, []image.PosixTimer) {
	its := []image.Itimer{{IntervalNs: 1e9, ValueNs: 5e9}, {ValueNs: 7e9}, {IntervalNs: 2e8, ValueNs: 3e8}}
	pts := []image.PosixTimer{
		{ID: 3, Clock: unix.CLOCK_MONOTONIC, SigevNotify: timer.SigevNone, ValueNs: 0},
		{ID: 10, Clock: unix.CLOCK_REALTIME, SigevNotify: timer.SigevSignal, Signo: int32(unix.SIGUSR1),
			SigevValue: 0x55, IntervalNs: 1e9, ValueNs: 60e9},
		{ID: 11, Clock: unix.CLOCK_MONOTONIC, SigevNotify: timer.SigevThread, Signo: int32(unix.SIGUSR2),
			IntervalNs: 3e6, ValueNs: 20e9},
		{ID: 1000, Clock: unix.CLOCK_BOOTTIME, SigevNotify: timer.SigevThreadID, Signo: 34,
			SigevValue: 1 << 63, NotifyTid: tid, ValueNs: 30e9},
	}
	return its, pts
}

// TestRestoreIDs restores timers with sparse ids into a stub, through the
// PR_TIMER_CREATE_RESTORE_IDS prctl and through the fallback without it, and
// dumps them back.
func TestRestoreIDs(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tc := range []struct {
		name    string
		restore func(*ptrace.Remote, []image.Itimer, []image.PosixTimer) error
	}{{"prctl", timer.Restore}, {"linear", timer.RestoreLinear}} {
		t.Run(tc.name, func(t *testing.T) {
			var gotIts, wantIts []image.Itimer
			var gotPts, wantPts []image.PosixTimer
			var elapsed span
			testutil.InStub(t, func(r *ptrace.Remote) {
				wantIts, wantPts = sparse(r.Pid)
				start := measure(t, r.Pid)
				if err := tc.restore(r, wantIts, wantPts); err != nil {
					t.Errorf("restore: %v", err)
					return
				}
				var err error
				if gotIts, gotPts, err = timer.Dump(r); err != nil {
					t.Errorf("dump stub: %v", err)
				}
				elapsed = start.since(t)
				on, err := r.Syscall(unix.SYS_PRCTL, unix.PR_TIMER_CREATE_RESTORE_IDS, unix.PR_TIMER_CREATE_RESTORE_IDS_GET)
				if err != nil || on != 0 {
					t.Errorf("PR_TIMER_CREATE_RESTORE_IDS after the restore: %d, %v; want off", on, err)
				}
			})
			if !t.Failed() {
				compareTimers(t, gotIts, wantIts, gotPts, wantPts, elapsed)
			}
		})
	}
}

// TestRestoreTakenID asks both ways for ids that cannot be had.
func TestRestoreTakenID(t *testing.T) {
	testutil.RequireRoot(t)
	testutil.InStub(t, func(r *ptrace.Remote) {
		pt := func(id int32) []image.PosixTimer {
			return []image.PosixTimer{{ID: id, Clock: unix.CLOCK_MONOTONIC, SigevNotify: timer.SigevNone}}
		}
		if err := timer.RestoreLinear(r, nil, pt(5)); err != nil {
			t.Errorf("restore timer 5: %v", err)
			return
		}
		err := timer.RestoreLinear(r, nil, pt(2))
		if err == nil || !strings.Contains(err.Error(), "POSIX timer 2 ") || !strings.Contains(err.Error(), "counter is at 6") {
			t.Errorf("linear restore of timer 2 after 5: %v, want a failure at counter 6", err)
		}
		err = timer.Restore(r, nil, pt(5))
		if err == nil || !strings.Contains(err.Error(), "id 5 is taken") {
			t.Errorf("restore of timer 5 twice: %v, want id 5 is taken", err)
		}
		err = timer.Restore(r, nil, append(pt(7), pt(7)...))
		if err == nil || !strings.Contains(err.Error(), "twice") {
			t.Errorf("restore of timer 7 twice in a list: %v, want an error", err)
		}
		_, pts, err := timer.Dump(r)
		if err != nil || len(pts) != 1 || !reflect.DeepEqual(pts, pt(5)) {
			t.Errorf("timers left: %+v, %v; want only timer 5", pts, err)
		}
	})
}
