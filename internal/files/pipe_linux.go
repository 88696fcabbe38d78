package files

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// pipeKind covers pipes held by the tree at both ends, or at one end with
// the other closed everywhere (see otherEndClosed: restored as a pipe
// whose other end is closed, as it was). A pipe whose other end is held
// outside the tree is external, see externalKind, which is tried first.
// All ends with the same inode are one
// pipe; the bytes buffered in it are saved once, on the first end dumped,
// without consuming them (tee into a pipe of rtcr's own). Restore creates
// each pipe once, refills it, and gives every fd a new open file description
// of the right end (fds that shared one are dup'd from the first, see
// openShared).
var pipeKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		if !strings.HasPrefix(s.link, "pipe:") {
			return image.FD{}, false, nil
		}
		if !s.tree.internal[s.st.Ino] {
			// The other end is outside the tree: externalKind takes
			// it.
			return image.FD{}, false, fmt.Errorf("pipe to a process outside the tree: %w", ErrUnsupported)
		}
		fd := image.FD{Flags: s.info.Flags, Desc: s.link, PipeID: s.st.Ino}
		if s.tree.saved[s.st.Ino] {
			return fd, true, nil
		}
		s.tree.saved[s.st.Ino] = true
		size, data, err := peekPipe(s.pid, s.num)
		if err != nil {
			return image.FD{}, false, err
		}
		fd.PipeSize, fd.PipeData = size, data
		return fd, true, nil
	},
	check: func(fd *image.FD) error { return nil },
	open: func(c *restoreCtx, fd *image.FD) (int, error) {
		home, ok := c.pipes[fd.PipeID]
		if !ok {
			ends, err := createPipe(c, fd)
			if err != nil {
				return -1, err
			}
			home = pipeHome{pid: c.r.Pid, nspid: c.r.NsPid, ends: ends}
			c.pipes[fd.PipeID] = home
		}
		end, mode := home.ends[0], unix.O_RDONLY
		if fd.Flags&unix.O_ACCMODE == unix.O_WRONLY {
			end, mode = home.ends[1], unix.O_WRONLY
		}
		// Every fd not sharing its open file description with another
		// (those come from openShared) gets its own. pipe2 makes one per
		// end, without O_LARGEFILE; every other is an open through /proc,
		// which adds O_LARGEFILE (F_SETFL cannot change it). So an fd
		// without it takes the end itself (at most one such open file
		// description per end), an fd with it a new open through /proc:
		// a dup of the end would share its status flags with the end's
		// other fds. The process holding both ends keeps the open from
		// ever waiting for a peer.
		var got int
		var err error
		if fd.Flags&oLargefile == 0 {
			got, err = takeIn(c, home.pid, home.nspid, end)
		} else {
			got, err = c.r.OpenAt(fmt.Sprintf("/proc/%d/fd/%d", home.pid, end), mode|unix.O_CLOEXEC, 0)
		}
		if err != nil {
			return -1, fmt.Errorf("open pipe end: %w", err)
		}
		return got, nil
	},
}

// peekPipe returns the capacity of the pipe at fd num of pid and the bytes
// buffered in it, leaving them there.
func peekPipe(pid, num int) (int, []byte, error) {
	// A read end of the same pipe, whichever end the process holds.
	src, err := os.OpenFile(fmt.Sprintf("/proc/%d/fd/%d", pid, num), os.O_RDONLY|unix.O_NONBLOCK, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("open pipe: %w", err)
	}
	defer src.Close()
	size, err := unix.FcntlInt(src.Fd(), unix.F_GETPIPE_SZ, 0)
	if err != nil {
		return 0, nil, fmt.Errorf("pipe size: %w", err)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		return 0, nil, err
	}
	defer unix.Close(p[0])
	defer unix.Close(p[1])
	if _, err := unix.FcntlInt(uintptr(p[1]), unix.F_SETPIPE_SZ, size); err != nil {
		return 0, nil, fmt.Errorf("size copy pipe to %d: %w", size, err)
	}
	n, err := unix.Tee(int(src.Fd()), p[1], size, unix.SPLICE_F_NONBLOCK)
	if errors.Is(err, unix.EAGAIN) {
		return size, nil, nil // empty
	}
	if err != nil {
		return 0, nil, fmt.Errorf("tee pipe contents: %w", err)
	}
	data := make([]byte, n)
	if _, err := unix.Read(p[0], data); err != nil {
		return 0, nil, err
	}
	return size, data, nil
}

// createPipe makes a pipe in the stub, moves both ends above every image
// fd, sets its capacity and refills it with the saved bytes.
func createPipe(c *restoreCtx, fd *image.FD) ([2]int, error) {
	var ends [2]int
	arr, err := c.r.Put(ptrace.ArgOff, make([]byte, 8))
	if err != nil {
		return ends, err
	}
	if _, err := c.r.Syscall(unix.SYS_PIPE2, arr, unix.O_CLOEXEC); err != nil {
		return ends, fmt.Errorf("pipe2: %w", err)
	}
	var raw [8]byte
	if err := c.r.Get(ptrace.ArgOff, raw[:]); err != nil {
		return ends, err
	}
	for i := range ends {
		tmp := uint64(raw[4*i]) | uint64(raw[4*i+1])<<8 | uint64(raw[4*i+2])<<16 | uint64(raw[4*i+3])<<24
		high, err := c.r.Syscall(unix.SYS_FCNTL, tmp, unix.F_DUPFD_CLOEXEC, uint64(c.tempBase))
		if err != nil {
			return ends, fmt.Errorf("move pipe end: %w", err)
		}
		if err := c.r.Close(int(tmp)); err != nil {
			return ends, err
		}
		ends[i] = int(high)
	}
	if fd.PipeSize > 0 {
		if _, err := c.r.Syscall(unix.SYS_FCNTL, uint64(ends[1]), unix.F_SETPIPE_SZ, uint64(fd.PipeSize)); err != nil {
			return ends, fmt.Errorf("set pipe size %d: %w", fd.PipeSize, err)
		}
	}
	if len(fd.PipeData) > 0 {
		// Non-blocking: the pipe was sized to hold the bytes, and nothing
		// reads it yet.
		w, err := os.OpenFile("/proc/"+strconv.Itoa(c.r.Pid)+"/fd/"+strconv.Itoa(ends[1]), os.O_WRONLY|unix.O_NONBLOCK, 0)
		if err != nil {
			return ends, fmt.Errorf("open new pipe: %w", err)
		}
		defer w.Close()
		if _, err := w.Write(fd.PipeData); err != nil {
			return ends, fmt.Errorf("refill pipe with %d bytes: %w", len(fd.PipeData), err)
		}
	}
	return ends, nil
}

// otherEndClosed reports whether no process at all (in the tree or
// outside it, rtcr included) holds the other end of the pipe at fd f: its
// write end when read is set (the tree holds only read ends), else its
// read end. The kernel counts a pipe's readers and writers (open file
// descriptions, wherever they are) and poll shows when one count is
// zero: a read end polls POLLHUP when no writer is left (a read end
// opened through /proc of a pipe made by pipe2 does not suppress it, as a
// FIFO's does until it has seen a writer), a write end POLLERR when no
// reader is left. The new open file description rtcr polls adds to the
// count of its own end only. A pipe whose other end is closed cannot get
// a new one (only through /proc of an fd of the tree, which is frozen),
// so the answer holds until the restore.
func otherEndClosed(f fdRef, read bool) (bool, error) {
	flags, want := unix.O_RDONLY, int16(unix.POLLHUP)
	if !read {
		flags, want = unix.O_WRONLY, unix.POLLERR
	}
	p := fmt.Sprintf("/proc/%d/fd/%d", f.pid, f.num)
	fd, err := unix.Open(p, flags|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("open pipe fd %d of %d to see if its other end is open: %w", f.num, f.pid, err)
	}
	defer unix.Close(fd)
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	if !read {
		pfd[0].Events = unix.POLLOUT
	}
	if _, err := unix.Poll(pfd, 0); err != nil {
		return false, fmt.Errorf("poll pipe fd %d of %d: %w", f.num, f.pid, err)
	}
	return pfd[0].Revents&want != 0, nil
}
