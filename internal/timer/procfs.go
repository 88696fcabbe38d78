package timer

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
)

// sigev_notify values (include/uapi/asm-generic/siginfo.h). The kernel
// accepts SIGEV_SIGNAL, SIGEV_NONE, SIGEV_THREAD (handled like
// SIGEV_SIGNAL: glibc implements its SIGEV_THREAD timers itself, with
// SIGEV_THREAD_ID to a helper thread) and SIGEV_THREAD_ID, which is
// SIGEV_SIGNAL to one thread.
const (
	SigevSignal   = 0
	SigevNone     = 1
	SigevThread   = 2
	SigevThreadID = 4
)

// notifyNames maps the first word of the "notify:" line to sigev_notify
// without the SIGEV_THREAD_ID bit, as show_timer (fs/proc/base.c) prints it.
var notifyNames = map[string]int32{
	"signal": SigevSignal,
	"none":   SigevNone,
	"thread": SigevThread,
}

// The lines of a /proc/PID/timers block after its ID line, as bits.
const (
	haveSignal = 1 << iota
	haveNotify
	haveClock
	haveAll = haveSignal | haveNotify | haveClock
)

// ReadTimers lists the POSIX timers of process pid from /proc/PID/timers,
// sorted by id. Their times (IntervalNs, ValueNs) are left 0: /proc does
// not show them.
func ReadTimers(pid int) ([]image.PosixTimer, error) {
	path := "/proc/" + strconv.Itoa(pid) + "/timers"
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pts, err := ParseTimers(b)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return pts, nil
}

// ParseTimers parses the text of /proc/PID/timers: one block of four lines
// per timer, newest timer first,
//
//	ID: 2
//	signal: 12/0000deadbeefcafe
//	notify: signal/tid.27738
//	ClockID: 0
//
// that is the timer id, the signal number and sigev_value (hexadecimal),
// the kind of notification ("signal", "none" or "thread"), followed by
// "tid" when the SIGEV_THREAD_ID bit is set ("pid" otherwise) and the pid or
// tid the signal goes to, and the clock id (negative for CPU-time clocks).
// The timers come back sorted by id, without their times. NotifyTid is set
// for SIGEV_THREAD_ID timers only: the pid of the others is the process's.
func ParseTimers(b []byte) ([]image.PosixTimer, error) {
	var pts []image.PosixTimer
	have := haveAll // no block open yet
	sc := bufio.NewScanner(bytes.NewReader(b))
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		key, val, ok := strings.Cut(line, ": ")
		if !ok {
			return nil, fmt.Errorf("line %d: %q is not \"key: value\"", n, line)
		}
		if key == "ID" {
			if have != haveAll {
				return nil, fmt.Errorf("line %d: timer %d has no %s line", n, pts[len(pts)-1].ID, missing(have))
			}
			id, err := strconv.ParseInt(val, 10, 32)
			if err != nil || id < 0 {
				return nil, fmt.Errorf("line %d: bad timer id %q", n, val)
			}
			pts = append(pts, image.PosixTimer{ID: int32(id)})
			have = 0
			continue
		}
		if len(pts) == 0 {
			return nil, fmt.Errorf("line %d: %q before the first ID line", n, line)
		}
		pt := &pts[len(pts)-1]
		var bit int
		var err error
		switch key {
		case "signal":
			bit, err = haveSignal, parseSignal(pt, val)
		case "notify":
			bit, err = haveNotify, parseNotify(pt, val)
		case "ClockID":
			var c int64
			c, err = strconv.ParseInt(val, 10, 32)
			bit, pt.Clock = haveClock, int32(c)
		default:
			return nil, fmt.Errorf("line %d: unknown key %q", n, key)
		}
		if err != nil {
			return nil, fmt.Errorf("line %d: timer %d: %s %q: %w", n, pt.ID, key, val, err)
		}
		if have&bit != 0 {
			return nil, fmt.Errorf("line %d: timer %d: second %s line", n, pt.ID, key)
		}
		have |= bit
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if have != haveAll {
		return nil, fmt.Errorf("timer %d has no %s line", pts[len(pts)-1].ID, missing(have))
	}
	slices.SortFunc(pts, func(a, b image.PosixTimer) int { return int(a.ID) - int(b.ID) })
	for i := 1; i < len(pts); i++ {
		if pts[i].ID == pts[i-1].ID {
			return nil, fmt.Errorf("timer %d listed twice", pts[i].ID)
		}
	}
	return pts, nil
}

// missing names the first line a block lacks, from its bit set have.
func missing(have int) string {
	switch {
	case have&haveSignal == 0:
		return "signal"
	case have&haveNotify == 0:
		return "notify"
	default:
		return "ClockID"
	}
}

// parseSignal parses "SIGNO/VALUE" (VALUE hexadecimal, without 0x).
func parseSignal(pt *image.PosixTimer, val string) error {
	signo, value, ok := strings.Cut(val, "/")
	if !ok {
		return errors.New("want SIGNO/VALUE")
	}
	s, err := strconv.ParseInt(signo, 10, 32)
	if err != nil || s < 0 {
		return fmt.Errorf("bad signal number %q", signo)
	}
	v, err := strconv.ParseUint(value, 16, 64)
	if err != nil {
		return fmt.Errorf("bad sigev_value %q", value)
	}
	pt.Signo, pt.SigevValue = int32(s), v
	return nil
}

// parseNotify parses "KIND/pid.N" or "KIND/tid.N".
func parseNotify(pt *image.PosixTimer, val string) error {
	kind, target, ok := strings.Cut(val, "/")
	if !ok {
		return errors.New("want KIND/pid.N or KIND/tid.N")
	}
	notify, ok := notifyNames[kind]
	if !ok {
		return fmt.Errorf("unknown notification %q", kind)
	}
	which, num, ok := strings.Cut(target, ".")
	if !ok || (which != "pid" && which != "tid") {
		return fmt.Errorf("bad target %q", target)
	}
	id, err := strconv.Atoi(num)
	if err != nil || id < 0 {
		return fmt.Errorf("bad target %q", target)
	}
	pt.SigevNotify, pt.NotifyTid = notify, 0
	if which == "tid" {
		pt.SigevNotify |= SigevThreadID
		pt.NotifyTid = id
	}
	return nil
}
