package timer_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/timer"
)

// TestParseTimersRecorded parses testdata/proc_timers.txt, recorded by
// testdata/record.c (pid 27738, timer 1 deleted, newest timer first).
func TestParseTimersRecorded(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "proc_timers.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := timer.ParseTimers(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []image.PosixTimer{
		{ID: 0, Clock: 1, SigevNotify: timer.SigevSignal, Signo: 10, SigevValue: 0x1234},
		{ID: 2, Clock: 0, SigevNotify: timer.SigevThreadID, Signo: 12, SigevValue: 0xdeadbeefcafe, NotifyTid: 27738},
		{ID: 3, Clock: 7, SigevNotify: timer.SigevNone},
		// CLOCK_PROCESS_CPUTIME_ID, as the kernel keeps it: the
		// process CPU clock of pid 0 (the caller).
		{ID: 4, Clock: -6, SigevNotify: timer.SigevThread, Signo: 36, SigevValue: 7},
		// clock_getcpuclockid(27738): ~27738<<3 | CPUCLOCK_SCHED.
		{ID: 5, Clock: -221910, SigevNotify: timer.SigevSignal, Signo: 14, SigevValue: ^uint64(0)},
		// CLOCK_THREAD_CPUTIME_ID: the thread CPU clock of tid 0.
		{ID: 6, Clock: -2, SigevNotify: timer.SigevNone, SigevValue: 42},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%+v\nwant\n%+v", got, want)
	}
}

func TestParseTimersEmpty(t *testing.T) {
	got, err := timer.ParseTimers(nil)
	if err != nil || len(got) != 0 {
		t.Errorf("got %v, %v; want no timers", got, err)
	}
}

func TestParseTimersMalformed(t *testing.T) {
	good := "ID: 0\nsignal: 10/0000000000001234\nnotify: signal/pid.7\nClockID: 1\n"
	tests := []struct{ name, in, errPart string }{
		{"no colon", "ID 0\n", "line 1"},
		{"before ID", "signal: 10/0\n", "before the first ID"},
		{"bad id", "ID: x\n", "bad timer id"},
		{"negative id", "ID: -1\n", "bad timer id"},
		{"missing clock", "ID: 0\nsignal: 10/0\nnotify: signal/pid.7\n", "no ClockID"},
		{"missing notify", "ID: 0\nsignal: 10/0\nClockID: 1\n" + good, "timer 0 has no notify"},
		{"duplicate line", good + "ClockID: 1\n", "second ClockID"},
		{"duplicate id", good + good, "listed twice"},
		{"unknown key", good + "Foo: 1\n", "unknown key"},
		{"bad signal", "ID: 0\nsignal: 10\n", "SIGNO/VALUE"},
		{"bad signo", "ID: 0\nsignal: x/0\n", "signal number"},
		{"bad value", "ID: 0\nsignal: 10/0x12\n", "sigev_value"},
		{"bad kind", "ID: 0\nnotify: loud/pid.7\n", "unknown notification"},
		{"bad target", "ID: 0\nnotify: signal/task.7\n", "bad target"},
		{"bad target number", "ID: 0\nnotify: signal/tid.x\n", "bad target"},
		{"bad clock", "ID: 0\nClockID: one\n", "ClockID"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := timer.ParseTimers([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.errPart) {
				t.Errorf("error %v, want one containing %q", err, tt.errPart)
			}
		})
	}
}
