// Package clock carries a process tree's CLOCK_MONOTONIC and
// CLOCK_BOOTTIME across a checkpoint, through the offsets of the time
// namespace the tree is restored into.
package clock

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/stub"
	"golang.org/x/sys/unix"
)

// Read returns the clocks as process pid sees them: the host's plus the
// offsets of pid's time namespace.
func Read(pid int) (*image.Clocks, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/timens_offsets", pid))
	if err != nil {
		return nil, fmt.Errorf("time namespace of %d: %w", pid, err)
	}
	off, err := ParseOffsets(string(b))
	if err != nil {
		return nil, fmt.Errorf("/proc/%d/timens_offsets: %w", pid, err)
	}
	mono, boot, real := host()
	return &image.Clocks{Monotonic: mono + off.Monotonic, Boottime: boot + off.Boottime, Realtime: real}, nil
}

// ParseOffsets parses /proc/PID/timens_offsets ("monotonic S NS" and
// "boottime S NS" lines).
func ParseOffsets(s string) (stub.TimeOffsets, error) {
	var off stub.TimeOffsets
	for _, line := range strings.Split(strings.TrimSpace(s), "\n") {
		f := strings.Fields(line)
		if len(f) != 3 {
			return off, fmt.Errorf("bad line %q", line)
		}
		sec, err1 := strconv.ParseInt(f[1], 10, 64)
		nsec, err2 := strconv.ParseInt(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return off, fmt.Errorf("bad line %q", line)
		}
		v := sec*1e9 + nsec
		switch f[0] {
		case "monotonic":
			off.Monotonic = v
		case "boottime":
			off.Boottime = v
		default:
			return off, fmt.Errorf("unknown clock %q", f[0])
		}
	}
	return off, nil
}

// Offsets returns the offsets that make a new time namespace's clocks
// continue from saved. With jump, they advance by the downtime (the time
// CLOCK_REALTIME moved since the checkpoint, so it holds across machines;
// never backwards); without, they continue as if no time had passed.
func Offsets(saved *image.Clocks, jump bool) stub.TimeOffsets {
	mono, boot, real := host()
	var down int64
	if jump {
		down = max(0, real-saved.Realtime)
	}
	return stub.TimeOffsets{
		Monotonic: saved.Monotonic + down - mono,
		Boottime:  saved.Boottime + down - boot,
	}
}

// host reads the host's monotonic, boottime and realtime clocks.
func host() (mono, boot, real int64) {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	mono = ts.Nano()
	_ = unix.ClockGettime(unix.CLOCK_BOOTTIME, &ts)
	boot = ts.Nano()
	_ = unix.ClockGettime(unix.CLOCK_REALTIME, &ts)
	return mono, boot, ts.Nano()
}
