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
// target's position does not move), once per memfd: every fd of the tree
// on one memfd (dup, fork, SCM_RIGHTS, a second open through /proc) and
// every mapping of it records its identity (device, inode), and restore
// makes them one memfd again. Restore creates the memfd in the first
// process of the tree with it, with memfd_create, as a helper fd above its
// image fds (see homes_linux.go), fills it through /proc/STUB/fd/N from
// rtcr and seals it; every fd on the memfd is a reopen of the helper
// through /proc with its own access mode. Hugetlb memfds are refused.
var memfdKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		name, ok := memfdName(s.link)
		if !ok || s.st.Mode&unix.S_IFMT != unix.S_IFREG {
			return image.FD{}, false, nil
		}
		fd := image.FD{
			Flags: s.info.Flags, Offset: s.info.Pos, Mode: s.st.Mode, Size: s.st.Size, Desc: s.link,
			MemfdName: name, FileDev: s.st.Dev, FileIno: s.st.Ino,
		}
		id := FileID{Dev: s.st.Dev, Ino: s.st.Ino}
		if s.tree.deleted[id] {
			return fd, true, nil // the contents are on the first record
		}
		if s.tree.deleted == nil {
			s.tree.deleted = map[FileID]bool{}
		}
		s.tree.deleted[id] = true
		f, err := os.Open(s.procPath())
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
		if fd.MemfdSeals, err = unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0); err != nil {
			return image.FD{}, false, fmt.Errorf("memfd seals (F_GET_SEALS): %w", err)
		}
		if fd.MemfdData, err = readRuns(int(f.Fd()), s.st.Size, "memfd"); err != nil {
			return image.FD{}, false, err
		}
		return fd, true, nil
	},
	check: func(fd *image.FD) error { return nil },
	open:  openHomed,
	pos:   true,
}

// createMemfd creates the memfd of fd (its first record in the tree) in
// the stub of c as a helper fd above every image fd, with its contents,
// size, permission bits and seals.
func createMemfd(c *restoreCtx, fd *image.FD) (pipeHome, error) {
	name, err := c.r.PutString(ptrace.DataOff, fd.MemfdName)
	if err != nil {
		return pipeHome{}, err
	}
	got, err := c.r.Syscall(unix.SYS_MEMFD_CREATE, name, unix.MFD_ALLOW_SEALING|unix.MFD_CLOEXEC)
	if err != nil {
		return pipeHome{}, fmt.Errorf("memfd_create %q: %w", fd.MemfdName, err)
	}
	high, err := c.r.Syscall(unix.SYS_FCNTL, got, unix.F_DUPFD_CLOEXEC, uint64(c.tempBase))
	if cerr := c.r.Close(int(got)); err == nil {
		err = cerr
	}
	if err != nil {
		return pipeHome{}, fmt.Errorf("move the recreated memfd: %w", err)
	}
	if err := fillMemfd(c.r.Pid, int(high), fd); err != nil {
		return pipeHome{}, err
	}
	return pipeHome{pid: c.r.Pid, ends: [2]int{int(high), int(high)}}, nil
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
