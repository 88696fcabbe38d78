package mem

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"golang.org/x/sys/unix"
)

// ErrUnsupported reports a mapping rtcr cannot checkpoint yet.
var ErrUnsupported = errors.New("not supported yet")

// ErrFileChanged reports a mapped file whose contents may differ from
// those at the checkpoint.
var ErrFileChanged = errors.New("mapped file changed since the checkpoint")

// classify turns one line of /proc/PID/smaps into an image VMA (without
// pages). It returns ok=false for mappings that are never part of an
// image ([vsyscall]).
func classify(pid int, m procfs.Mapping) (v image.VMA, ok bool, err error) {
	v = image.VMA{Start: m.Start, End: m.End, Shared: m.Shared, GrowsDown: m.HasFlag("gd"), Name: m.Path}
	if m.Read {
		v.Prot |= unix.PROT_READ
	}
	if m.Write {
		v.Prot |= unix.PROT_WRITE
	}
	if m.Exec {
		v.Prot |= unix.PROT_EXEC
	}
	where := fmt.Sprintf("mapping %#x-%#x %q of %d", m.Start, m.End, m.Path, pid)
	switch m.Path {
	case "[vsyscall]":
		return v, false, nil
	case "[vdso]":
		v.Kind = image.KindVDSO
		return v, true, nil
	case "[vvar]":
		v.Kind = image.KindVvar
		return v, true, nil
	case "[vvar_vclock]":
		v.Kind = image.KindVvarClock
		return v, true, nil
	case "[heap]":
		v.Kind = image.KindHeap
	case "[stack]":
		v.Kind = image.KindStack
	case "":
		v.Kind = image.KindAnon
		if m.Shared {
			v.Kind = image.KindSharedAnon
		}
	case "/dev/zero (deleted)", "/dev/zero":
		// MAP_SHARED|MAP_ANONYMOUS is shmem named "/dev/zero (deleted)";
		// a private mapping of /dev/zero is plain anonymous memory.
		v.Kind = image.KindAnon
		if m.Shared {
			v.Kind = image.KindSharedAnon
			// The shmem object, the same in every sharer, and where in it
			// this mapping starts.
			v.Inode, v.Offset = m.Inode, m.Offset
			if err := shmSize(pid, &v); err != nil {
				return v, false, fmt.Errorf("%s: %w", where, err)
			}
		}
	default:
		switch {
		case strings.HasPrefix(m.Path, "[anon:"):
			v.Kind = image.KindAnon
		case strings.HasPrefix(m.Path, "[anon_shmem:"):
			v.Kind = image.KindSharedAnon
			v.Inode, v.Offset = m.Inode, m.Offset
			if err := shmSize(pid, &v); err != nil {
				return v, false, fmt.Errorf("%s: %w", where, err)
			}
		case strings.HasPrefix(m.Path, "/SYSV"):
			// The inode number is the shmid (see Shared.sysvMapping).
			v.Kind, v.Inode, v.Offset = image.KindSysV, m.Inode, m.Offset
		case strings.HasPrefix(m.Path, "/memfd:"):
			// The file's identity comes from Shared.dumpFile.
			v.Kind, v.Offset = image.KindMemfd, m.Offset
		case strings.HasSuffix(m.Path, " (deleted)"):
			v.Kind, v.Offset = image.KindDeleted, m.Offset
		case strings.HasPrefix(m.Path, "/"):
			v.Kind = image.KindFile
			if err := fileIdentity(pid, m, &v); err != nil {
				return v, false, fmt.Errorf("%s: %w", where, err)
			}
		default:
			return v, false, fmt.Errorf("%s: special mapping: %w", where, ErrUnsupported)
		}
	}
	if err := checkFlags(m, &v, where); err != nil {
		return v, false, err
	}
	return v, true, nil
}

// shmSize records the size of the shared anonymous memory object v maps.
func shmSize(pid int, v *image.VMA) error {
	var st unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/map_files/%x-%x", pid, v.Start, v.End), &st); err != nil {
		return fmt.Errorf("stat shared memory: %w", err)
	}
	v.ShmSize = st.Size
	return nil
}

// fileIdentity records which file a mapping shows and checks that the
// path still names that file (not a replacement created since).
func fileIdentity(pid int, m procfs.Mapping, v *image.VMA) error {
	v.Path = m.Path
	v.Offset = m.Offset
	v.Dev = unix.Mkdev(m.DevMajor, m.DevMinor)
	v.Inode = m.Inode
	var st unix.Stat_t
	if err := unix.Stat(m.Path, &st); err != nil {
		return fmt.Errorf("stat mapped file: %w", err)
	}
	if st.Ino != m.Inode || st.Dev != v.Dev {
		return fmt.Errorf("%s was replaced since it was mapped (inode %d, mapped %d): %w", m.Path, st.Ino, m.Inode, ErrUnsupported)
	}
	v.FileSize = st.Size
	v.FileMtime = st.Mtim.Nano()
	v.FileCtime = st.Ctim.Nano()
	return nil
}

// CheckFiles verifies, before any process is created, that every file the
// image maps still exists with the size, modification time and change
// time it had at dump. Pages rtcr did not save (all of a shared mapping,
// the pages of a private one not yet copied) are the file's own: a file
// that changed would show different memory, so it is refused naming the
// file, the mapping and what changed.
//
// Size and times are what is dependable without reading the file: a write
// (write, truncate, a store through a shared mapping) sets mtime and
// ctime; setting mtime back (touch -d, utimes) sets ctime, which no
// program can set; since Linux 6.13 tmpfs, ext4, xfs and btrfs give a
// change made after a stat (the dump's) a fine-grained time, so even a
// write in the same clock tick as the dump shows. A chmod, chown or link
// also changes ctime and is refused too: rtcr cannot tell it from a write
// with mtime set back.
func CheckFiles(p *image.Process) error {
	for _, v := range p.VMAs {
		if v.Kind != image.KindFile {
			continue // memfds and deleted files are restored from the image
		}
		var st unix.Stat_t
		if err := unix.Stat(v.Path, &st); err != nil {
			if errors.Is(err, syscall.ENOENT) {
				return fmt.Errorf("mapping %#x-%#x: file %s has vanished: %w", v.Start, v.End, v.Path, os.ErrNotExist)
			}
			return fmt.Errorf("mapping %#x-%#x: stat %s: %w", v.Start, v.End, v.Path, err)
		}
		var what []string
		if st.Size != v.FileSize {
			what = append(what, fmt.Sprintf("size %d, was %d", st.Size, v.FileSize))
		}
		if st.Mtim.Nano() != v.FileMtime {
			what = append(what, fmt.Sprintf("mtime %d, was %d", st.Mtim.Nano(), v.FileMtime))
		}
		if v.FileCtime != 0 && st.Ctim.Nano() != v.FileCtime {
			what = append(what, fmt.Sprintf("ctime %d, was %d", st.Ctim.Nano(), v.FileCtime))
		}
		if len(what) > 0 {
			how := "private"
			if v.Shared {
				how = "shared"
			}
			return fmt.Errorf("%s mapping %#x-%#x: file %s (%s): %w", how, v.Start, v.End, v.Path, strings.Join(what, "; "), ErrFileChanged)
		}
	}
	return nil
}
