package timer_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"github.com/rtcr/rtcr/internal/testutil"
	"github.com/rtcr/rtcr/internal/timer"
	"golang.org/x/sys/unix"
)

// TestRoundTrip dumps the timers of testdata/timers.c, checks the dump
// holds what the program set up, restores them into a stub and dumps the
// stub again. It also lets the program check that its timers still work
// after the dump.
//
// Everything but the times left must come back exactly. The times left
// cannot: they run down between the restore and the second dump. See
// compareTimes for the tolerance.
func TestRoundTrip(t *testing.T) {
	testutil.RequireRoot(t)
	bin := testutil.BuildC(t, "timers", false)
	trigger := filepath.Join(t.TempDir(), "trigger")
	tg := testutil.StartTarget(t, bin, "ready\n", trigger)
	var its []image.Itimer
	var pts []image.PosixTimer
	testutil.Frozen(t, tg.Pid, func(r *ptrace.Remote, _ []int) {
		var err error
		if its, pts, err = timer.Dump(r); err != nil {
			t.Errorf("dump target: %v", err)
		}
	})
	if t.Failed() {
		return
	}
	checkTarget(t, tg.Pid, its, pts)
	// The program now checks that its timers run on as before.
	if err := os.WriteFile(trigger, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	defer func() {
		lines := testutil.WaitForLines(t, tg.Out, 2, 10*time.Second)
		if lines[1] != "OK" {
			out, _ := os.ReadFile(tg.Out)
			t.Errorf("target after the dump:\n%s", out)
		}
	}()

	var gotIts, wantIts []image.Itimer
	var gotPts, wantPts []image.PosixTimer
	var elapsed span
	testutil.InStub(t, func(r *ptrace.Remote) {
		// The stub has another pid than the target: the SIGEV_THREAD_ID
		// timer must notify the stub's thread (a real restore has the
		// same tids).
		wantIts, wantPts = its, retarget(pts, tg.Pid, r.Pid)
		start := measure(t, r.Pid)
		if err := timer.Restore(r, wantIts, wantPts); err != nil {
			t.Errorf("restore: %v", err)
			return
		}
		var err error
		if gotIts, gotPts, err = timer.Dump(r); err != nil {
			t.Errorf("dump stub: %v", err)
		}
		elapsed = start.since(t)
	})
	if !t.Failed() {
		compareTimers(t, gotIts, wantIts, gotPts, wantPts, elapsed)
	}
}

// checkTarget checks the dump of testdata/timers.c.
func checkTarget(t *testing.T, pid int, its []image.Itimer, pts []image.PosixTimer) {
	t.Helper()
	if len(its) != 3 {
		t.Fatalf("%d itimers, want 3", len(its))
	}
	if rt := its[0]; rt.IntervalNs != 2e9 || rt.ValueNs <= 0 || rt.ValueNs > 3e9 {
		t.Errorf("ITIMER_REAL %+v, want interval 2 s and 0 < value <= 3 s", rt)
	}
	if its[1] != (image.Itimer{}) || its[2] != (image.Itimer{}) {
		t.Errorf("ITIMER_VIRTUAL %+v, ITIMER_PROF %+v, want both disarmed", its[1], its[2])
	}
	if len(pts) != 3 {
		t.Fatalf("POSIX timers %+v, want 3", pts)
	}
	want := []image.PosixTimer{
		{ID: 0, Clock: unix.CLOCK_MONOTONIC, SigevNotify: timer.SigevSignal, Signo: int32(unix.SIGUSR1), SigevValue: 0x1234, IntervalNs: 5e6},
		{ID: 1, Clock: unix.CLOCK_BOOTTIME, SigevNotify: timer.SigevNone},
		{ID: 2, Clock: unix.CLOCK_REALTIME, SigevNotify: timer.SigevThreadID, Signo: int32(unix.SIGUSR2), SigevValue: 0xabcd, NotifyTid: pid},
	}
	maxValue := []int64{5e6, 0, 10e9}
	for i, pt := range pts {
		v := pt.ValueNs
		pt.ValueNs = 0
		if pt != want[i] {
			t.Errorf("POSIX timer %+v, want %+v", pt, want[i])
		}
		if v < 0 || v > maxValue[i] || (v == 0) != (maxValue[i] == 0) {
			t.Errorf("POSIX timer %d has %d ns left, want 0 < left <= %d (0 if disarmed)", pt.ID, v, maxValue[i])
		}
	}
}

// retarget returns a copy of pts with SIGEV_THREAD_ID timers notifying
// thread to instead of from.
func retarget(pts []image.PosixTimer, from, to int) []image.PosixTimer {
	out := append([]image.PosixTimer(nil), pts...)
	for i := range out {
		if out[i].NotifyTid == from {
			out[i].NotifyTid = to
		}
	}
	return out
}

// span is the time between a restore and the dump after it: on the wall
// clock (for the timers of CLOCK_REALTIME, MONOTONIC, BOOTTIME) and in CPU
// time of the process (user plus system, the clock ITIMER_PROF counts;
// ITIMER_VIRTUAL counts user time only, less). On a loaded machine the two
// differ by far: a stub that waits for its CPU for 400 ms spends 1 ms of
// CPU time.
type span struct {
	wall, cpu time.Duration
	pid       int
	start     time.Time
	cpuStart  time.Duration
}

// measure starts a span for process pid.
func measure(t *testing.T, pid int) span {
	return span{pid: pid, start: time.Now(), cpuStart: cpuTime(t, pid)}
}

// since ends the span started by measure.
func (s span) since(t *testing.T) span {
	s.wall = time.Since(s.start)
	s.cpu = cpuTime(t, s.pid) - s.cpuStart
	return s
}

// cpuTime reads the CPU-time clock of process pid
// (MAKE_PROCESS_CPUCLOCK(pid, CPUCLOCK_PROF): user plus system time).
func cpuTime(t *testing.T, pid int) time.Duration {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(^int32(pid)<<3, &ts); err != nil {
		t.Fatalf("CPU-time clock of %d: %v", pid, err)
	}
	return time.Duration(ts.Nano())
}

// compareTimers checks the timers dumped after a restore against the ones
// restored, elapsed after the restore (see compareTimes): the CPU-time
// itimers against the CPU time the process spent, the others against the
// wall clock.
func compareTimers(t *testing.T, gotIts, wantIts []image.Itimer, gotPts, wantPts []image.PosixTimer, elapsed span) {
	t.Helper()
	if len(gotIts) != len(wantIts) {
		t.Fatalf("itimers %+v, want %+v", gotIts, wantIts)
	}
	for i := range gotIts {
		cpu, d := i > 0, elapsed.wall
		if cpu {
			d = elapsed.cpu
		}
		compareTimes(t, "itimer "+[]string{"REAL", "VIRTUAL", "PROF"}[i], cpu,
			gotIts[i].IntervalNs, gotIts[i].ValueNs, wantIts[i].IntervalNs, wantIts[i].ValueNs, d)
	}
	if len(gotPts) != len(wantPts) {
		t.Fatalf("POSIX timers\n got %+v\nwant %+v", gotPts, wantPts)
	}
	for i := range gotPts {
		g, w := gotPts[i], wantPts[i]
		compareTimes(t, fmt.Sprintf("POSIX timer %d", g.ID), false, g.IntervalNs, g.ValueNs, w.IntervalNs, w.ValueNs, elapsed.wall)
		g.ValueNs, w.ValueNs = 0, 0
		if g != w {
			t.Errorf("POSIX timer\n got %+v\nwant %+v", g, w)
		}
	}
}

// compareTimes compares the interval and time left of one timer. Intervals
// must be equal. A disarmed timer must stay disarmed. An armed timer runs
// down from the restore to the dump, at most elapsed: when it cannot have
// expired in between, want-elapsed-slack <= got <= want, the slack covering
// the microsecond rounding of getitimer; when it may have, a periodic timer
// has 0 < got <= interval and a one-shot 0 <= got <= want. The kernel adds
// one tick (1 to 10 ms, CONFIG_HZ) to the value of a CPU-time itimer
// (ITIMER_VIRTUAL, ITIMER_PROF) when it is set and does not take it off
// when it is read: cpuTick allows for that. For such a timer elapsed is
// the CPU time the process spent, which the kernel charges in ticks: the
// slack then also allows one tick.
func compareTimes(t *testing.T, what string, cpuTick bool, gotIv, got, wantIv, want int64, elapsed time.Duration) {
	t.Helper()
	slack := int64(time.Millisecond)
	upper := want
	clock := "wall"
	if cpuTick {
		slack += int64(10 * time.Millisecond)
		clock = "CPU"
		if want != 0 {
			upper += int64(10 * time.Millisecond)
		}
	}
	t.Logf("%s: interval %d ns, %d ns left; restored with %d ns left, %v (%s time) before", what, gotIv, got, want, elapsed, clock)
	switch {
	case gotIv != wantIv:
		t.Errorf("%s: interval %d ns, want %d ns", what, gotIv, wantIv)
	case want == 0:
		if got != 0 {
			t.Errorf("%s: armed with %d ns left, want disarmed", what, got)
		}
	case want > int64(elapsed)+slack:
		if got < want-int64(elapsed)-slack || got > upper {
			t.Errorf("%s: %d ns left, want %d ns minus at most %v", what, got, want, elapsed)
		}
	case wantIv != 0:
		if got <= 0 || got > wantIv {
			t.Errorf("%s: %d ns left, want 0 < left <= interval %d ns", what, got, wantIv)
		}
	default:
		if got < 0 || got > upper {
			t.Errorf("%s: %d ns left, want 0 <= left <= %d ns", what, got, want)
		}
	}
}
