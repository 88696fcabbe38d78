package files

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// epollKind covers epoll instances: each watched fd with its event mask
// (EPOLLET, EPOLLONESHOT … included) and data, from the fdinfo "tfd"
// lines. Restored late, after the fds it watches.
var epollKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		if s.link != "anon_inode:[eventpoll]" {
			return image.FD{}, false, nil
		}
		fd := image.FD{Flags: s.info.Flags, Desc: s.link}
		for _, line := range s.info.Values("tfd") {
			t, ino, err := parseTfd(line)
			if err != nil {
				return image.FD{}, false, err
			}
			// The watch is keyed by the file, registered under an fd
			// number that may since have been closed or reused.
			var st unix.Stat_t
			if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", s.pid, t.Fd), &st); err != nil || st.Ino != ino {
				return image.FD{}, false, fmt.Errorf("watched fd %d no longer names the watched file: %w", t.Fd, ErrUnsupported)
			}
			fd.Epoll = append(fd.Epoll, t)
		}
		return fd, true, nil
	},
	check: func(fd *image.FD) error { return nil },
	open: func(c *restoreCtx, fd *image.FD) (int, error) {
		flags := uint64(fd.Flags & unix.O_CLOEXEC)
		got, err := c.r.Syscall(unix.SYS_EPOLL_CREATE1, flags)
		if err != nil {
			return -1, fmt.Errorf("epoll_create1: %w", err)
		}
		for _, t := range fd.Epoll {
			ev := abi.EpollEvent{Events: t.Events, DataLo: uint32(t.Data), DataHi: uint32(t.Data >> 32)}
			addr, err := c.r.Put(ptrace.ArgOff, ptrace.Bytes(&ev))
			if err != nil {
				return -1, err
			}
			if _, err := c.r.Syscall(unix.SYS_EPOLL_CTL, got, unix.EPOLL_CTL_ADD, uint64(t.Fd), addr); err != nil {
				return -1, fmt.Errorf("epoll_ctl add fd %d (events %#x): %w", t.Fd, t.Events, err)
			}
		}
		return int(got), nil
	},
	late:   true,
	fields: []string{"tfd"},
	// epoll_create1 takes no status flag.
	exact: func(fd *image.FD) bool { return fd.Flags&statusFlags == 0 },
}

// parseTfd parses one fdinfo "tfd" value:
// "11 events: 19 data: b  pos:0 ino:16c8 sdev:f" (numbers after events,
// data and ino are hex).
func parseTfd(v string) (image.EpollTarget, uint64, error) {
	f := strings.Fields(v)
	var t image.EpollTarget
	var ino uint64
	bad := fmt.Errorf("epoll fdinfo line %q: %w", v, errBadFdinfo)
	if len(f) < 5 || f[1] != "events:" || f[3] != "data:" {
		return t, 0, bad
	}
	n, err := strconv.Atoi(f[0])
	if err != nil {
		return t, 0, bad
	}
	ev, err := strconv.ParseUint(f[2], 16, 32)
	if err != nil {
		return t, 0, bad
	}
	data, err := strconv.ParseUint(f[4], 16, 64)
	if err != nil {
		return t, 0, bad
	}
	for _, kv := range f[5:] {
		if v, ok := strings.CutPrefix(kv, "ino:"); ok {
			if ino, err = strconv.ParseUint(v, 16, 64); err != nil {
				return t, 0, bad
			}
		}
	}
	return image.EpollTarget{Fd: n, Events: uint32(ev), Data: data}, ino, nil
}
