package files

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// epollKind covers epoll instances: each watched fd with its event mask
// (EPOLLET, EPOLLONESHOT … included) and data, from the fdinfo "tfd"
// lines. Restored late, after the fds it watches.
//
// A watch outlives the fd it was added with: the kernel drops it only
// when the last reference to the open file goes, so a watched fd may be
// closed (or reused for another file) while a dup, or a forked child's
// copy, keeps the file and the watch alive. Such a watch is found at dump
// with kcmp(KCMP_EPOLL_TFD) on the fds of the tree (findEpollHeld) and
// restored on that fd's open file description once every process has its
// fds (AddHeldWatches). A watched file no fd of the tree holds (held
// outside the tree, or only by a message in flight) is refused.
var epollKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		if s.link != "anon_inode:[eventpoll]" {
			return image.FD{}, false, nil
		}
		fd := image.FD{Flags: s.info.Flags, Desc: s.link}
		seen := map[int]int{} // watches per fd number so far: kcmp's toff
		for _, line := range s.info.Values("tfd") {
			t, ino, err := parseTfd(line)
			if err != nil {
				return image.FD{}, false, err
			}
			w := epollWatch{pid: s.pid, epfd: s.num, tfd: t.Fd, toff: seen[t.Fd]}
			seen[t.Fd]++
			if same, err := sameWatched(s.pid, t.Fd, w); err != nil {
				return image.FD{}, false, err
			} else if !same {
				t.Held = s.tree.epollHeld[w]
				if t.Held == 0 {
					return image.FD{}, false, fmt.Errorf("watched fd %d no longer names the watched file (inode %d), which no fd of the tree holds (held outside the tree, or by a message in flight): %w", t.Fd, ino, ErrUnsupported)
				}
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
			if t.Held != 0 {
				// The file may belong to a process not restored yet.
				c.held = append(c.held, heldWatch{c: c, epfd: fd.Num, t: t})
				continue
			}
			if err := epollAdd(c.r, int(got), t.Fd, t); err != nil {
				return -1, err
			}
		}
		return int(got), nil
	},
	late:   true,
	fields: []string{"tfd"},
	// epoll_create1 takes no status flag.
	exact: func(fd *image.FD) bool { return fd.Flags&statusFlags == 0 },
}

// epollAdd adds fd num of the stub r to the epoll epfd with the events
// and data of t.
func epollAdd(r *ptrace.Remote, epfd, num int, t image.EpollTarget) error {
	ev := abi.EpollEvent{Events: t.Events, DataLo: uint32(t.Data), DataHi: uint32(t.Data >> 32)}
	addr, err := r.Put(ptrace.ArgOff, ptrace.Bytes(&ev))
	if err != nil {
		return err
	}
	if _, err := r.Syscall(unix.SYS_EPOLL_CTL, uint64(epfd), unix.EPOLL_CTL_ADD, uint64(num), addr); err != nil {
		return fmt.Errorf("epoll_ctl add fd %d (events %#x): %w", num, t.Events, err)
	}
	return nil
}

// epollWatch names one watch of an epoll: fd epfd of pid watching the
// toff-th item registered under fd number tfd (fdinfo order).
type epollWatch struct{ pid, epfd, tfd, toff int }

// kcmpEpollTfd is KCMP_EPOLL_TFD of kcmp(2): is fd num of pid the file of
// an epoll watch.
const kcmpEpollTfd = 7

// sameWatched reports whether fd num of process pid is the file of watch
// w; an fd that is not open is not.
func sameWatched(pid, num int, w epollWatch) (bool, error) {
	slot := [3]uint32{uint32(w.epfd), uint32(w.tfd), uint32(w.toff)}
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(pid), uintptr(w.pid), kcmpEpollTfd, uintptr(num), uintptr(unsafe.Pointer(&slot)), 0)
	if errno == unix.EBADF {
		return false, nil
	}
	if errno != 0 {
		return false, fmt.Errorf("kcmp(KCMP_EPOLL_TFD) fd %d of %d with watch of fd %d (#%d) of epoll %d of %d: %w", num, pid, w.tfd, w.toff, w.epfd, w.pid, errno)
	}
	return r == 0, nil
}

// findEpollHeld finds, for every epoll watch of the processes pids whose
// fd no longer names the watched file, an fd of the tree that holds the
// file (the epoll's own process first), and records in t.epollHeld the
// shared id of that fd's open file description, giving it one if it had
// none: Dump then records the id on the fd and on the watch.
func (t *Tree) findEpollHeld(pids []int) error {
	t.epollHeld = map[epollWatch]int{}
	next := 1
	for _, id := range t.shared {
		next = max(next, id+1)
	}
	for _, pid := range pids {
		fds, err := t.fdLinks(pid)
		if err != nil {
			return err
		}
		for _, fd := range fds {
			n := fd.num
			if fd.link != "anon_inode:[eventpoll]" {
				continue
			}
			info, err := procfs.ReadFDInfo(pid, n)
			if err != nil {
				return fmt.Errorf("fd %d of %d: %w", n, pid, err)
			}
			seen := map[int]int{}
			for _, line := range info.Values("tfd") {
				tg, ino, err := parseTfd(line)
				if err != nil {
					return fmt.Errorf("fd %d of %d: %w", n, pid, err)
				}
				w := epollWatch{pid: pid, epfd: n, tfd: tg.Fd, toff: seen[tg.Fd]}
				seen[tg.Fd]++
				if same, err := sameWatched(pid, tg.Fd, w); err != nil || same {
					continue // Dump reports the error
				}
				holder, err := findHolder(pid, pids, ino, w)
				if err != nil {
					return err
				}
				if holder == (fdRef{}) {
					continue
				}
				id := t.shared[holder]
				if id == 0 {
					id = next
					next++
					t.shared[holder] = id
				}
				t.epollHeld[w] = id
			}
		}
	}
	return nil
}

// findHolder returns an fd of the processes pids (pid's own first) whose
// file, of inode ino, is that of watch w; the zero fdRef if none is.
func findHolder(pid int, pids []int, ino uint64, w epollWatch) (fdRef, error) {
	order := append([]int{pid}, pids...)
	for i, q := range order {
		if i > 0 && q == pid {
			continue
		}
		nums, err := procfs.ListFDs(q)
		if err != nil {
			return fdRef{}, err
		}
		for _, m := range nums {
			var st unix.Stat_t
			if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", q, m), &st); err != nil || st.Ino != ino {
				continue
			}
			same, err := sameWatched(q, m, w)
			if err != nil {
				return fdRef{}, err
			}
			if same {
				return fdRef{q, m}, nil
			}
		}
	}
	return fdRef{}, nil
}

// heldWatch is an epoll watch restored once every process has its fds:
// fd epfd of the stub of c watches the open file with shared id t.Held.
type heldWatch struct {
	c    *restoreCtx
	epfd int
	t    image.EpollTarget
}

// AddHeldWatches adds the epoll watches whose file another fd of the tree
// holds (see epollKind), once every process's Install is done and before
// Sweep. The epoll gets the open file through a copy of that fd
// (takeIn), put at the watch's old fd number when the process has
// nothing there (else the copy's number is the watch's key), and the copy
// is closed: the fd that held it at dump keeps the file and the watch.
func (rs *Restorer) AddHeldWatches() error {
	for _, h := range rs.held {
		r := h.c.r
		home, ok := rs.shared[h.t.Held]
		if !ok {
			return fmt.Errorf("restore epoll fd %d: watch of fd %d: shared open file %d was not restored: %w", h.epfd, h.t.Fd, h.t.Held, image.ErrCorrupt)
		}
		src, err := takeIn(h.c, home.pid, home.nspid, home.fd.Num)
		if err != nil {
			return fmt.Errorf("restore epoll fd %d: watch of fd %d: %w", h.epfd, h.t.Fd, err)
		}
		key := src
		if _, err := r.Syscall(unix.SYS_FCNTL, uint64(h.t.Fd), unix.F_GETFD); errors.Is(err, unix.EBADF) {
			if _, err := r.Syscall(unix.SYS_DUP3, uint64(src), uint64(h.t.Fd), unix.O_CLOEXEC); err != nil {
				return fmt.Errorf("restore epoll fd %d: watch of fd %d: dup3: %w", h.epfd, h.t.Fd, err)
			}
			key = h.t.Fd
		}
		if err := epollAdd(r, h.epfd, key, h.t); err != nil {
			return fmt.Errorf("restore epoll fd %d: watch of fd %d (the file of fd %d of %d): %w", h.epfd, h.t.Fd, home.fd.Num, home.nspid, err)
		}
		for _, n := range []int{src, key} {
			if err := r.Close(n); err != nil && !errors.Is(err, unix.EBADF) {
				return err
			}
		}
	}
	rs.held = nil
	return nil
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
