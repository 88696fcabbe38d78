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

// memfdKind covers memfds (readlink "/memfd:NAME (deleted)"): the name,
// the contents (runs of data, holes skipped with SEEK_DATA/SEEK_HOLE), the
// size, the permission bits, the seals and the position. rtcr reads the
// contents through its own open of /proc/PID/fd/N (a new open file, so the
// target's position does not move). Restore creates the memfd in the stub
// with memfd_create and fills it through /proc/STUB/fd/N from rtcr; the
// seals come last. A memfd held by several fds of the tree (dup, fork,
// SCM_RIGHTS) is refused: each would become a memfd of its own. Hugetlb
// memfds are refused. An fd open read-only or write-only (a reopen through
// /proc) is reopened so in the stub.
var memfdKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		name, ok := memfdName(s.link)
		if !ok || s.st.Mode&unix.S_IFMT != unix.S_IFREG {
			return image.FD{}, false, nil
		}
		where := fmt.Sprintf("fd %d of %d", s.num, s.pid)
		if other, ok := s.tree.memfds[s.st.Ino]; ok {
			if s.shared != 0 && s.tree.memfdShared[s.st.Ino] == s.shared {
				// A dup of the first fd (dup, fork, SCM_RIGHTS):
				// restore gives it the first one's open file.
				return image.FD{Flags: s.info.Flags, Offset: s.info.Pos, Mode: s.st.Mode, Size: s.st.Size, Desc: s.link, MemfdName: name}, true, nil
			}
			return image.FD{}, false, fmt.Errorf("memfd shared with %s (one memfd open twice, not a dup of one open file): %w", other, ErrUnsupported)
		}
		if s.tree.memfds == nil {
			s.tree.memfds = map[uint64]string{}
			s.tree.memfdShared = map[uint64]int{}
		}
		s.tree.memfds[s.st.Ino] = where
		s.tree.memfdShared[s.st.Ino] = s.shared
		f, err := os.Open(fmt.Sprintf("/proc/%d/fd/%d", s.pid, s.num))
		if err != nil {
			return image.FD{}, false, fmt.Errorf("open memfd: %w", err)
		}
		defer f.Close()
		var sfs unix.Statfs_t
		if err := unix.Fstatfs(int(f.Fd()), &sfs); err != nil {
			return image.FD{}, false, fmt.Errorf("statfs memfd: %w", err)
		}
		if sfs.Type == unix.HUGETLBFS_MAGIC {
			return image.FD{}, false, fmt.Errorf("hugetlb memfd: %w", ErrUnsupported)
		}
		seals, err := unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
		if err != nil {
			return image.FD{}, false, fmt.Errorf("memfd seals (F_GET_SEALS): %w", err)
		}
		runs, err := readRuns(int(f.Fd()), s.st.Size, "memfd")
		if err != nil {
			return image.FD{}, false, err
		}
		return image.FD{
			Flags: s.info.Flags, Offset: s.info.Pos, Mode: s.st.Mode, Size: s.st.Size, Desc: s.link,
			MemfdName: name, MemfdSeals: seals, MemfdData: runs,
		}, true, nil
	},
	check: func(fd *image.FD) error { return nil },
	open: func(c *restoreCtx, fd *image.FD) (int, error) {
		name, err := c.r.PutString(ptrace.DataOff, fd.MemfdName)
		if err != nil {
			return -1, err
		}
		flags := uint64(unix.MFD_ALLOW_SEALING)
		if fd.Flags&unix.O_CLOEXEC != 0 {
			flags |= unix.MFD_CLOEXEC
		}
		got, err := c.r.Syscall(unix.SYS_MEMFD_CREATE, name, flags)
		if err != nil {
			return -1, fmt.Errorf("memfd_create %q: %w", fd.MemfdName, err)
		}
		if err := fillMemfd(c.r.Pid, int(got), fd); err != nil {
			return -1, err
		}
		if mode := fd.Flags & unix.O_ACCMODE; mode != unix.O_RDWR {
			// memfd_create opens O_RDWR; a reopen through /proc (as the
			// program did) gives the fd's access mode.
			ro, err := c.r.OpenAt(fmt.Sprintf("/proc/self/fd/%d", got), mode|unix.O_CLOEXEC, 0)
			if err != nil {
				return -1, fmt.Errorf("reopen memfd with access mode %#o: %w", mode, err)
			}
			if err := c.r.Close(int(got)); err != nil {
				return -1, err
			}
			got = uint64(ro)
		}
		if fd.Offset != 0 {
			if _, err := c.r.Syscall(unix.SYS_LSEEK, got, uint64(fd.Offset), unix.SEEK_SET); err != nil {
				return -1, fmt.Errorf("seek memfd to %d: %w", fd.Offset, err)
			}
		}
		return int(got), nil
	},
	pos: true,
}

// memfdName returns the name of a memfd from its fd's link
// ("/memfd:NAME (deleted)").
func memfdName(link string) (string, bool) {
	rest, ok := strings.CutPrefix(link, "/memfd:")
	if !ok {
		return "", false
	}
	return strings.CutSuffix(rest, " (deleted)")
}

// readRuns reads the data of file fd of size bytes as runs, skipping
// holes; what names the file for messages.
func readRuns(fd int, size int64, what string) ([]image.DataRun, error) {
	var runs []image.DataRun
	var total int64
	for off := int64(0); off < size; {
		start, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break // only a hole up to the end
		}
		if err != nil {
			return nil, fmt.Errorf("%s SEEK_DATA at %d: %w", what, off, err)
		}
		end, err := unix.Seek(fd, start, unix.SEEK_HOLE)
		if err != nil {
			return nil, fmt.Errorf("%s SEEK_HOLE at %d: %w", what, start, err)
		}
		end = min(end, size)
		total += end - start
		if total > image.MaxMemfdData {
			return nil, fmt.Errorf("%s with more than %d bytes of data (the manifest holds its contents): %w", what, image.MaxMemfdData, ErrUnsupported)
		}
		data := make([]byte, end-start)
		if n, err := unix.Pread(fd, data, start); err != nil || n != len(data) {
			return nil, fmt.Errorf("read %s at %d: %d of %d bytes: %v", what, start, n, len(data), err)
		}
		runs = append(runs, image.DataRun{Off: start, Data: data})
		off = end
	}
	return runs, nil
}

// fillMemfd gives the new memfd got of the stub pid its contents, size,
// permission bits and, last, its seals, through rtcr's own open of it.
func fillMemfd(pid, got int, fd *image.FD) error {
	f, err := os.OpenFile("/proc/"+strconv.Itoa(pid)+"/fd/"+strconv.Itoa(got), os.O_WRONLY, 0)
	if err != nil {
		return fmt.Errorf("open new memfd: %w", err)
	}
	defer f.Close()
	for _, r := range fd.MemfdData {
		if _, err := f.WriteAt(r.Data, r.Off); err != nil {
			return fmt.Errorf("write %d bytes into memfd at %d: %w", len(r.Data), r.Off, err)
		}
	}
	if err := f.Truncate(fd.Size); err != nil {
		return fmt.Errorf("truncate memfd to %d: %w", fd.Size, err)
	}
	if err := unix.Fchmod(int(f.Fd()), fd.Mode&0o7777); err != nil {
		return fmt.Errorf("chmod memfd %#o: %w", fd.Mode&0o7777, err)
	}
	if fd.MemfdSeals != 0 {
		if _, err := unix.FcntlInt(f.Fd(), unix.F_ADD_SEALS, fd.MemfdSeals); err != nil {
			return fmt.Errorf("memfd seals %#x (F_ADD_SEALS): %w", fd.MemfdSeals, err)
		}
	}
	return nil
}
