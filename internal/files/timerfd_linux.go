package files

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"unsafe"

	"github.com/rtcr/rtcr/internal/clock"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// tfdIocSetTicks is TFD_IOC_SET_TICKS (_IOW('T', 0, u64), linux/timerfd.h):
// it sets the expirations a timerfd reports as not yet read. The kernel
// has it only with CONFIG_CHECKPOINT_RESTORE.
const tfdIocSetTicks = 0x40085400

// timerfdKind covers timerfds: the clock, TFD_TIMER_ABSTIME, the next
// expiry, the interval, the expirations not yet read (fdinfo "ticks") and
// the O_NONBLOCK/O_CLOEXEC flags. TFD_TIMER_CANCEL_ON_SET is refused:
// whether the clock was set since (a read then fails ECANCELED) is not
// visible.
//
// The dump takes a copy of the fd (pidfd_getfd) and calls timerfd_gettime
// on it first: a periodic timer that expired is only moved to its next
// expiry, and the expirations it missed counted in ticks, by a read or
// timerfd_gettime (before that fdinfo shows it_value 0 and ticks 1, however
// many intervals passed). This is what the process's own next read or
// timerfd_gettime would do, so it sees no difference.
//
// A relative timer is restored with the time that was left: the time
// between dump and restore does not count. An absolute one
// (TFD_TIMER_ABSTIME) keeps its expiry on its clock: the dump computes it
// from fdinfo's time left and the clock read around the fdinfo read, as
// the process sees the clock (its time namespace's offsets added). In an
// `rtcr run` tree CLOCK_MONOTONIC and CLOCK_BOOTTIME continue in the new
// namespace and the expiry is where it was (with the default clock jump,
// time passed between dump and restore, and a periodic timer counts the
// expirations it missed, as for a stopped process). Restored outside
// `rtcr run`, the process reads the host's CLOCK_MONOTONIC: the expiry
// stays the same number, so on the same boot it has come closer by the
// downtime (or passed: the timer fires at once), after a reboot it may
// be far away, as the clock the process reads has jumped too.
var timerfdKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		if s.link != "anon_inode:[timerfd]" {
			return image.FD{}, false, nil
		}
		fd, err := dumpTimerfd(s)
		if err != nil {
			return image.FD{}, false, err
		}
		return fd, true, nil
	},
	check: func(fd *image.FD) error {
		if fd.TimerTicks == 0 {
			return nil
		}
		return checkSetTicks()
	},
	open:   openTimerfd,
	fields: []string{"clockid", "ticks", "settime flags", "it_value", "it_interval"},
	// timerfd_create takes O_NONBLOCK, not the other status flags.
	exact: func(fd *image.FD) bool { return fd.Flags&statusFlags&^unix.O_NONBLOCK == 0 },
}

// timerInfo is the timer part of a timerfd's fdinfo.
type timerInfo struct {
	clock, flags    int
	ticks           uint64
	value, interval int64 // ns
}

func dumpTimerfd(s *fdState) (image.FD, error) {
	dup, err := s.copy()
	if err != nil {
		return image.FD{}, err
	}
	defer unix.Close(dup)
	first, err := parseTimerInfo(s.info)
	if err != nil {
		return image.FD{}, err
	}
	if first.flags&^unix.TFD_TIMER_ABSTIME != 0 {
		return image.FD{}, fmt.Errorf("timerfd settime flags %#o (TFD_TIMER_CANCEL_ON_SET): %w", first.flags, ErrUnsupported)
	}
	// A periodic timer can expire again between timerfd_gettime and the
	// fdinfo read; then fdinfo shows it_value 0 and both are read again.
	for try := 0; try < 100; try++ {
		var cur unix.ItimerSpec
		if err := unix.TimerfdGettime(dup, &cur); err != nil {
			return image.FD{}, fmt.Errorf("timerfd_gettime: %w", err)
		}
		before, err := processClock(s.pid, first.clock)
		if err != nil {
			return image.FD{}, err
		}
		info, err := procfs.ReadFDInfo(s.pid, s.num)
		if err != nil {
			return image.FD{}, err
		}
		after, err := processClock(s.pid, first.clock)
		if err != nil {
			return image.FD{}, err
		}
		ti, err := parseTimerInfo(info)
		if err != nil {
			return image.FD{}, err
		}
		if ti.value == 0 && ti.interval != 0 && cur.Value.Nano() != 0 {
			continue
		}
		if ti.value != 0 && ti.flags&unix.TFD_TIMER_ABSTIME != 0 {
			ti.value += before + (after-before)/2
		}
		return image.FD{
			Flags: s.info.Flags, Desc: s.link, TimerClock: ti.clock, TimerFlags: ti.flags,
			TimerValue: ti.value, TimerInterval: ti.interval, TimerTicks: ti.ticks,
		}, nil
	}
	return image.FD{}, fmt.Errorf("timerfd interval %d ns: expired again at every read of its state: %w", first.interval, ErrUnsupported)
}

// parseTimerInfo reads the timerfd lines of fdinfo info.
func parseTimerInfo(info *procfs.FDInfo) (timerInfo, error) {
	var ti timerInfo
	var err error
	field := func(key string) string { return strings.TrimSpace(info.Extra[key]) }
	if ti.clock, err = strconv.Atoi(field("clockid")); err != nil {
		return ti, fmt.Errorf("timerfd clockid in fdinfo: %w", err)
	}
	if ti.ticks, err = strconv.ParseUint(field("ticks"), 10, 64); err != nil {
		return ti, fmt.Errorf("timerfd ticks in fdinfo: %w", err)
	}
	flags, err := strconv.ParseUint(field("settime flags"), 8, 32)
	if err != nil {
		return ti, fmt.Errorf("timerfd settime flags in fdinfo: %w", err)
	}
	ti.flags = int(flags)
	if ti.value, err = parseTimespec(field("it_value")); err != nil {
		return ti, fmt.Errorf("timerfd it_value in fdinfo: %w", err)
	}
	if ti.interval, err = parseTimespec(field("it_interval")); err != nil {
		return ti, fmt.Errorf("timerfd it_interval in fdinfo: %w", err)
	}
	return ti, nil
}

// parseTimespec parses fdinfo's "(SEC, NSEC)" into ns.
func parseTimespec(v string) (int64, error) {
	sec, nsec, ok := strings.Cut(strings.Trim(v, "()"), ",")
	if !ok || !strings.HasPrefix(v, "(") || !strings.HasSuffix(v, ")") {
		return 0, fmt.Errorf("%q: %w", v, errBadFdinfo)
	}
	s, err1 := strconv.ParseInt(strings.TrimSpace(sec), 10, 64)
	ns, err2 := strconv.ParseInt(strings.TrimSpace(nsec), 10, 64)
	if err1 != nil || err2 != nil || s < 0 || s > 1<<33 || ns < 0 || ns >= 1e9 {
		return 0, fmt.Errorf("%q: %w", v, errBadFdinfo)
	}
	return s*1e9 + ns, nil
}

// processClock reads clock id as process pid sees it, in ns: rtcr's own
// reading plus the offset of pid's time namespace for the monotonic and
// boot clocks.
func processClock(pid, id int) (int64, error) {
	base := id
	switch id {
	case unix.CLOCK_REALTIME_ALARM:
		base = unix.CLOCK_REALTIME
	case unix.CLOCK_BOOTTIME_ALARM:
		base = unix.CLOCK_BOOTTIME
	}
	var ts unix.Timespec
	if err := unix.ClockGettime(int32(base), &ts); err != nil {
		return 0, fmt.Errorf("clock_gettime %d: %w", base, err)
	}
	if base == unix.CLOCK_REALTIME {
		return ts.Nano(), nil
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/timens_offsets", pid))
	if err != nil {
		return 0, fmt.Errorf("time namespace of %d: %w", pid, err)
	}
	off, err := clock.ParseOffsets(string(b))
	if err != nil {
		return 0, fmt.Errorf("/proc/%d/timens_offsets: %w", pid, err)
	}
	if base == unix.CLOCK_BOOTTIME {
		return ts.Nano() + off.Boottime, nil
	}
	return ts.Nano() + off.Monotonic, nil
}

// checkSetTicks makes sure this kernel has TFD_IOC_SET_TICKS, on a timerfd
// of rtcr's own.
func checkSetTicks() error {
	tfd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("timerfd_create: %w", err)
	}
	defer unix.Close(tfd)
	ticks := uint64(1)
	if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(tfd), tfdIocSetTicks, uintptr(unsafe.Pointer(&ticks))); e != 0 {
		return fmt.Errorf("unread timerfd expirations need TFD_IOC_SET_TICKS (CONFIG_CHECKPOINT_RESTORE): %w", e)
	}
	return nil
}

// openTimerfd creates the timer in the stub, arms it and sets its unread
// expirations (timerfd_settime resets them to 0).
func openTimerfd(c *restoreCtx, fd *image.FD) (int, error) {
	flags := uint64(fd.Flags & (unix.O_NONBLOCK | unix.O_CLOEXEC))
	got, err := c.r.Syscall(unix.SYS_TIMERFD_CREATE, uint64(fd.TimerClock), flags)
	if err != nil {
		return -1, fmt.Errorf("timerfd_create clock %d: %w", fd.TimerClock, err)
	}
	its := unix.ItimerSpec{Interval: unix.NsecToTimespec(fd.TimerInterval), Value: unix.NsecToTimespec(fd.TimerValue)}
	addr, err := c.r.Put(ptrace.ArgOff, ptrace.Bytes(&its))
	if err != nil {
		return -1, err
	}
	if _, err := c.r.Syscall(unix.SYS_TIMERFD_SETTIME, got, uint64(fd.TimerFlags), addr, 0); err != nil {
		return -1, fmt.Errorf("timerfd_settime flags %#o value %d ns interval %d ns: %w", fd.TimerFlags, fd.TimerValue, fd.TimerInterval, err)
	}
	if fd.TimerTicks == 0 {
		return int(got), nil
	}
	// An expiry between timerfd_settime and the ioctl would be overwritten:
	// count it in (a window of one fdinfo read remains).
	info, err := procfs.ReadFDInfo(c.r.Pid, int(got))
	if err != nil {
		return -1, err
	}
	now, err := parseTimerInfo(info)
	if err != nil {
		return -1, err
	}
	addr, err = c.r.Put(ptrace.ArgOff, binary.LittleEndian.AppendUint64(nil, fd.TimerTicks+now.ticks))
	if err != nil {
		return -1, err
	}
	if _, err := c.r.Syscall(unix.SYS_IOCTL, got, tfdIocSetTicks, addr); err != nil {
		return -1, fmt.Errorf("set %d unread expirations (TFD_IOC_SET_TICKS): %w", fd.TimerTicks, err)
	}
	return int(got), nil
}
