package files

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// fifoKind covers named pipes (FIFOs) opened by path. Every fd on one
// FIFO shares its pipe buffer, whichever process opened it and however:
// the dump saves the buffered bytes once per FIFO (on the first fd
// dumped, without consuming them, as for pipes), restore refills them
// once per tree. Each fd is reopened by path, its own open file
// description.
//
// Opening a FIFO can block (no reader, no writer) or fail (ENXIO, a
// non-blocking writer without readers), and its buffer lives only while
// someone has it open: the first process of the tree that has a FIFO
// first opens it O_RDWR|O_NONBLOCK as a helper fd above its image fds
// (an O_RDWR open never waits for a peer), which keeps the buffer alive
// and lets every other open, made with O_NONBLOCK, succeed at once. Sweep
// closes the helper once every process has its fds.
var fifoKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		if s.st.Mode&unix.S_IFMT != unix.S_IFIFO || !strings.HasPrefix(s.link, "/") {
			return image.FD{}, false, nil
		}
		if strings.HasSuffix(s.link, " (deleted)") {
			return image.FD{}, false, fmt.Errorf("open FIFO was deleted: %w", ErrUnsupported)
		}
		var now unix.Stat_t
		if err := unix.Lstat(s.link, &now); err != nil {
			return image.FD{}, false, fmt.Errorf("stat %s: %w", s.link, err)
		}
		if now.Ino != s.st.Ino || now.Dev != s.st.Dev {
			return image.FD{}, false, fmt.Errorf("%s now names another file than the FIFO open: %w", s.link, ErrUnsupported)
		}
		fd := image.FD{Path: s.link, Flags: s.info.Flags, Mode: s.st.Mode, Desc: s.link + " (FIFO)"}
		size, data, err := peekPipe(s.pid, s.num)
		if err != nil {
			return image.FD{}, false, err
		}
		fd.PipeSize = size
		id := FileID{Dev: s.st.Dev, Ino: s.st.Ino}
		if !s.tree.fifos[id] {
			s.tree.fifos[id] = true
			fd.PipeData = data
		}
		return fd, true, nil
	},
	check: func(fd *image.FD) error {
		var st unix.Stat_t
		if err := unix.Lstat(fd.Path, &st); err != nil {
			if errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("FIFO %s has vanished since the checkpoint", fd.Path)
			}
			return fmt.Errorf("stat %s: %w", fd.Path, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFIFO {
			return fmt.Errorf("%s is no longer a FIFO (mode %o): %w", fd.Path, st.Mode, ErrChanged)
		}
		return nil
	},
	open: func(c *restoreCtx, fd *image.FD) (int, error) {
		ids, err := CheckAccess(c.as, []Access{fdAccess(fd)})
		if err != nil {
			return -1, err
		}
		if _, ok := c.fifos[fd.Path]; !ok {
			// The helper: opened with the restorer's rights (the check
			// above was the process's, for its own access mode), never
			// seen by the process.
			h, err := OpenIn(c.r, fd.Path, unix.O_RDWR|unix.O_CLOEXEC, ids[0])
			if err != nil {
				return -1, fmt.Errorf("open FIFO helper: %w", err)
			}
			high, err := c.r.Syscall(unix.SYS_FCNTL, uint64(h), unix.F_DUPFD_CLOEXEC, uint64(c.tempBase))
			if cerr := c.r.Close(h); err == nil {
				err = cerr
			}
			if err != nil {
				return -1, fmt.Errorf("move FIFO helper: %w", err)
			}
			if fd.PipeSize > 0 {
				if _, err := c.r.Syscall(unix.SYS_FCNTL, high, unix.F_SETPIPE_SZ, uint64(fd.PipeSize)); err != nil {
					return -1, fmt.Errorf("set FIFO size %d: %w", fd.PipeSize, err)
				}
			}
			c.fifos[fd.Path] = pipeHome{pid: c.r.Pid, ends: [2]int{int(high), int(high)}}
		}
		if len(fd.PipeData) > 0 {
			if err := refillFifo(c.fifos[fd.Path], fd.Path, fd.PipeData); err != nil {
				return -1, err
			}
		}
		return OpenIn(c.r, fd.Path, fd.Flags, ids[0])
	},
}

// refillFifo writes data into the FIFO held open by helper h. The FIFO
// must be empty: bytes in it mean a process outside the tree has it open
// and wrote to it, and the saved bytes may be those (refused rather than
// doubled). It is sized to hold the data, so the write does not block.
func refillFifo(h pipeHome, path string, data []byte) error {
	w, err := os.OpenFile("/proc/"+strconv.Itoa(h.pid)+"/fd/"+strconv.Itoa(h.ends[1]), os.O_RDWR|unix.O_NONBLOCK, 0)
	if err != nil {
		return fmt.Errorf("open FIFO %s to refill: %w", path, err)
	}
	defer w.Close()
	n, err := unix.IoctlGetInt(int(w.Fd()), unix.TIOCINQ) // FIONREAD
	if err != nil {
		return fmt.Errorf("bytes in FIFO %s: %w", path, err)
	}
	if n != 0 {
		return fmt.Errorf("FIFO %s holds %d bytes before its %d saved ones are put back (a process outside the tree has it open?): %w", path, n, len(data), ErrChanged)
	}
	if _, err := w.Write(data); err != nil {
		return fmt.Errorf("refill FIFO with %d bytes: %w", len(data), err)
	}
	return nil
}
