package files

import (
	"errors"
	"fmt"
	"slices"
	"unsafe"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/osthread"
	"golang.org/x/sys/unix"
)

// ErrAccess reports a file the restored process could not open itself.
var ErrAccess = errors.New("the restored process could not open it")

// Access is one file a restored process will have open or mapped.
type Access struct {
	Path  string
	Flags int    // open flags (access mode, O_PATH, O_DIRECTORY …)
	Type  uint32 // the file type recorded at dump (S_IFREG …), 0: regular
	What  string // for messages: "fd 3", "mapping 0x400000-0x401000"
	// Exec asks for execute permission instead of the access mode: the
	// executable and its mappings, which a process gets through execve
	// even when it may not read the file (mode 0711).
	Exec bool
	// Create asks for write and search permission on a directory
	// instead of the access mode: the process creates a file in it.
	Create bool
}

// FileID identifies the file a path named when it was checked.
type FileID struct{ Dev, Ino uint64 }

// CheckAccess opens every file of want as a process with credentials c
// would (nil: with the restorer's own rights): on an OS thread of its own
// that takes c's fs uid and gid,
// supplementary groups and effective capabilities (and then ends), it
// opens the path with O_PATH without following any symbolic link
// (openat2 RESOLVE_NO_SYMLINKS), checks the file type is the recorded one
// (regular file, directory, FIFO, or one of the stateless character devices),
// and reopens it with the access mode and O_NONBLOCK, so that permissions
// are checked as the process's and nothing blocks. It returns the identity
// of each file, which the stub's own open is compared to.
func CheckAccess(c *image.Creds, want []Access) ([]FileID, error) {
	if c == nil {
		// The restorer's own rights: no thread to change, and none to
		// start (a new OS thread for every process of a tree, twice).
		return checkAs(nil, want)
	}
	var ids []FileID
	var err error
	// The thread's credentials are changed for good: it ends with fn.
	osthread.Do(func() { ids, err = checkAs(c, want) })
	return ids, err
}

// checkAs runs on a locked thread: take c's credentials, then check each
// file.
func checkAs(c *image.Creds, want []Access) ([]FileID, error) {
	if c != nil {
		if err := becomeFS(c); err != nil {
			return nil, err
		}
	}
	ids := make([]FileID, 0, len(want))
	for _, a := range want {
		id, err := checkOne(a)
		if err != nil {
			return nil, fmt.Errorf("%s (%s): %w", a.What, a.Path, err)
		}
		ids = append(ids, id)
	}
	return ids, nil
}

// becomeFS gives the calling thread (only: raw system calls, not the Go
// runtime's all-threads versions) c's groups, fs ids and effective
// capabilities; the permitted set stays, so the order does not matter.
func becomeFS(c *image.Creds) error {
	cur, err := unix.Getgroups()
	if err != nil {
		return err
	}
	same := len(cur) == len(c.Groups)
	for i := 0; same && i < len(cur); i++ {
		same = slices.Contains(c.Groups, uint32(cur[i]))
	}
	if !same {
		// Needs CAP_SETGID; without it the groups must already be ours.
		var p *uint32
		if len(c.Groups) > 0 {
			p = &c.Groups[0]
		}
		if _, _, e := unix.RawSyscall(unix.SYS_SETGROUPS, uintptr(len(c.Groups)), uintptr(unsafe.Pointer(p)), 0); e != 0 {
			return fmt.Errorf("take the process's groups to check its files: %w", e)
		}
	}
	// setfsuid/setfsgid return the previous id and cannot fail visibly:
	// ask again (with an invalid id, which changes nothing) to verify.
	unix.RawSyscall(unix.SYS_SETFSGID, uintptr(c.Fsgid), 0, 0)
	if g, _, _ := unix.RawSyscall(unix.SYS_SETFSGID, ^uintptr(0), 0, 0); uint32(g) != c.Fsgid {
		return fmt.Errorf("take fs gid %d to check the process's files: not permitted", c.Fsgid)
	}
	unix.RawSyscall(unix.SYS_SETFSUID, uintptr(c.Fsuid), 0, 0)
	if u, _, _ := unix.RawSyscall(unix.SYS_SETFSUID, ^uintptr(0), 0, 0); uint32(u) != c.Fsuid {
		return fmt.Errorf("take fs uid %d to check the process's files: not permitted", c.Fsuid)
	}
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return fmt.Errorf("capget: %w", err)
	}
	data[0].Effective = uint32(c.CapEff) & data[0].Permitted
	data[1].Effective = uint32(c.CapEff>>32) & data[1].Permitted
	if err := unix.Capset(&hdr, &data[0]); err != nil {
		return fmt.Errorf("take effective capabilities %#x to check the process's files: %w", c.CapEff, err)
	}
	return nil
}

// checkOne checks one file with the thread's current credentials.
func checkOne(a Access) (FileID, error) {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC | uint64(a.Flags&unix.O_DIRECTORY),
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	if a.Type&unix.S_IFMT == unix.S_IFLNK {
		// The link itself: with O_PATH|O_NOFOLLOW, RESOLVE_NO_SYMLINKS
		// still refuses links on the way to it.
		how.Flags |= unix.O_NOFOLLOW
	}
	pfd, err := unix.Openat2(unix.AT_FDCWD, a.Path, &how)
	if err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
			return FileID{}, fmt.Errorf("%w: %w", ErrAccess, err)
		}
		return FileID{}, fmt.Errorf("open: %w", err)
	}
	defer unix.Close(pfd)
	var st unix.Stat_t
	if err := unix.Fstat(pfd, &st); err != nil {
		return FileID{}, err
	}
	if err := checkType(a, st.Mode); err != nil {
		return FileID{}, err
	}
	id := FileID{Dev: st.Dev, Ino: st.Ino}
	if a.Create {
		if err := unix.Faccessat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", pfd), unix.W_OK|unix.X_OK, unix.AT_EACCESS); err != nil {
			if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS) {
				return FileID{}, fmt.Errorf("%w: create a file in it: %w", ErrAccess, err)
			}
			return FileID{}, fmt.Errorf("access: %w", err)
		}
		return id, nil
	}
	if a.Flags&unix.O_PATH != 0 {
		return id, nil // an O_PATH fd needs only the search permissions above
	}
	if a.Exec {
		// AT_EACCESS: checked with the thread's fs ids, not the real ones.
		if err := unix.Faccessat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", pfd), unix.X_OK, unix.AT_EACCESS); err != nil {
			if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) {
				return FileID{}, fmt.Errorf("%w: execute: %w", ErrAccess, err)
			}
			return FileID{}, fmt.Errorf("access: %w", err)
		}
		return id, nil
	}
	if st.Mode&unix.S_IFMT == unix.S_IFIFO {
		// Opening a FIFO waits for (or, non-blocking, fails without) a
		// peer: ask for the permission the access mode needs instead.
		if err := unix.Faccessat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", pfd), fifoAccess(a.Flags), unix.AT_EACCESS); err != nil {
			if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS) {
				return FileID{}, fmt.Errorf("%w: %w", ErrAccess, err)
			}
			return FileID{}, fmt.Errorf("access: %w", err)
		}
		return id, nil
	}
	// Reopen the very file checked, with the access mode: the permission
	// check is the process's.
	flags := a.Flags&(unix.O_ACCMODE|unix.O_DIRECTORY) | unix.O_NONBLOCK | unix.O_NOCTTY | unix.O_CLOEXEC
	fd, err := unix.Open(fmt.Sprintf("/proc/self/fd/%d", pfd), flags, 0)
	if err != nil {
		if errors.Is(err, unix.EACCES) || errors.Is(err, unix.EPERM) || errors.Is(err, unix.EROFS) {
			return FileID{}, fmt.Errorf("%w: %w", ErrAccess, err)
		}
		return FileID{}, fmt.Errorf("open: %w", err)
	}
	unix.Close(fd)
	return id, nil
}

// fifoAccess is the access(2) mode an open with flags needs.
func fifoAccess(flags int) uint32 {
	switch flags & unix.O_ACCMODE {
	case unix.O_WRONLY:
		return unix.W_OK
	case unix.O_RDWR:
		return unix.R_OK | unix.W_OK
	}
	return unix.R_OK
}

// checkType checks the file type st is the one recorded, and one a
// restore opens: a regular file, a directory, or a stateless device.
func checkType(a Access, mode uint32) error {
	want := a.Type & unix.S_IFMT
	if want == 0 {
		want = unix.S_IFREG
	}
	got := mode & unix.S_IFMT
	if got != want {
		return fmt.Errorf("file type %#o, the checkpoint recorded %#o: %w", got, want, ErrChanged)
	}
	if got == unix.S_IFCHR && !statelessDevices[a.Path] {
		return fmt.Errorf("character device not one rtcr reopens: %w", ErrUnsupported)
	}
	if got == unix.S_IFLNK && a.Flags&unix.O_PATH == 0 {
		return fmt.Errorf("symbolic link opened without O_PATH: %w", ErrUnsupported)
	}
	if got != unix.S_IFREG && got != unix.S_IFDIR && got != unix.S_IFCHR && got != unix.S_IFIFO && got != unix.S_IFLNK {
		return fmt.Errorf("file type %#o: %w", got, ErrUnsupported)
	}
	return nil
}

// CheckProcess checks, with credentials as (nil: the restorer's rights),
// every file process p will have open or mapped (see CheckAccess): its
// path fds with their access mode, the directory of each deleted file
// (to create a file in), its file mappings and its executable (see
// mappedAccess).
func CheckProcess(p *image.Process, as *image.Creds) error {
	var want []Access
	for _, fd := range p.FDs {
		if fd.Kind == image.FDFile || fd.Kind == image.FDFifo {
			want = append(want, fdAccess(&fd))
		}
		if fd.Kind == image.FDDeleted {
			want = append(want, deletedAccess(&fd))
		}
	}
	for _, fd := range p.MapFiles {
		if fd.Kind == image.FDDeleted {
			want = append(want, deletedAccess(&fd))
		}
	}
	if p.CwdDeleted != nil {
		want = append(want, deletedAccess(p.CwdDeleted))
	}
	_, err := CheckAccess(as, append(want, mappedAccess(p)...))
	return err
}

// mappedAccess is what internal/mem opens for process p: each file
// mapping (read-write if shared and writable or may become so, as it maps them) and the
// executable (for PR_SET_MM_MAP), all regular files. The executable and
// its own mappings need execute permission only, as for execve.
func mappedAccess(p *image.Process) []Access {
	want := []Access{{Path: p.Exe, Flags: unix.O_RDONLY, What: "executable", Exec: true}}
	for _, v := range p.VMAs {
		if v.Kind != image.KindFile {
			continue
		}
		flags := unix.O_RDONLY
		if v.OpensWritable() {
			flags = unix.O_RDWR
		}
		exec := v.Path == p.Exe && flags == unix.O_RDONLY
		want = append(want, Access{Path: v.Path, Flags: flags, What: fmt.Sprintf("mapping %#x-%#x", v.Start, v.End), Exec: exec})
	}
	return want
}

// fdAccess is the Access of a path fd.
func fdAccess(fd *image.FD) Access {
	return Access{Path: fd.Path, Flags: fd.Flags, Type: fd.Mode & unix.S_IFMT, What: fmt.Sprintf("fd %d", fd.Num)}
}
