package files

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
	"golang.org/x/sys/unix"
)

// maxInotifyWd bounds the wds rtcr reproduces: a wd N takes up to N-1
// dummy watches at restore.
const maxInotifyWd = 1 << 16

// inotifyKind covers inotify instances: every watch (fdinfo "inotify"
// lines) with its wd and mask. The watched file is found at dump from its
// file handle (open_by_handle_at on a mount of its device) and recorded by
// path; restore adds each watch again by that path. A watch on a deleted
// file that a process of the tree holds open is recorded by the file's
// identity instead and added on the recreated file (its helper's /proc
// link: the file must be restored by then, by this process or an earlier
// one). The kernel gives wds
// cyclically (the lowest free one above the last given), so restore adds
// the watches in wd order and, to skip a wd no longer in use, adds and
// removes a dummy watch; the IN_IGNORED events these leave are read away.
// Restore fails if a wd comes out other than saved. Events queued and not
// yet read are not saved: a dump with any (FIONREAD) is refused.
var inotifyKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		if s.link != "anon_inode:inotify" {
			return image.FD{}, false, nil
		}
		if n, err := inotifyQueued(s); err != nil {
			return image.FD{}, false, err
		} else if n != 0 {
			return image.FD{}, false, fmt.Errorf("%d bytes of queued inotify events (not saved): %w", n, ErrUnsupported)
		}
		fd := image.FD{Flags: s.info.Flags, Desc: s.link}
		for _, line := range s.info.Values("inotify") {
			w, err := dumpWatch(line, s.tree, s.pid)
			if err != nil {
				return image.FD{}, false, err
			}
			fd.Inotify = append(fd.Inotify, w)
		}
		// fdinfo lists the newest watch first.
		slices.SortFunc(fd.Inotify, func(a, b image.InotifyWatch) int { return a.Wd - b.Wd })
		return fd, true, nil
	},
	check: func(fd *image.FD) error {
		for _, w := range fd.Inotify {
			if w.Path == "" {
				continue // a deleted file of the tree, restored with it
			}
			if _, err := os.Lstat(w.Path); err != nil {
				return fmt.Errorf("watched file of inotify wd %d: %w", w.Wd, err)
			}
		}
		return nil
	},
	open: func(c *restoreCtx, fd *image.FD) (int, error) {
		flags := uint64(fd.Flags & (unix.O_NONBLOCK | unix.O_CLOEXEC))
		got, err := c.r.Syscall(unix.SYS_INOTIFY_INIT1, flags)
		if err != nil {
			return -1, fmt.Errorf("inotify_init1: %w", err)
		}
		if err := addWatches(c, int(got), fd.Inotify); err != nil {
			return -1, err
		}
		return int(got), nil
	},
	fields: []string{"inotify"},
	// inotify_init1 takes O_NONBLOCK, not the other status flags.
	exact: func(fd *image.FD) bool { return fd.Flags&statusFlags&^unix.O_NONBLOCK == 0 },
}

// inotifyQueued returns the bytes of events queued on inotify fd s
// (FIONREAD, TIOCINQ in x/sys, on a copy of the fd).
func inotifyQueued(s *fdState) (int, error) {
	dup, err := s.copy()
	if err != nil {
		return 0, err
	}
	defer unix.Close(dup)
	n, err := unix.IoctlGetInt(dup, unix.TIOCINQ)
	if err != nil {
		return 0, fmt.Errorf("inotify FIONREAD: %w", err)
	}
	return n, nil
}

// dumpWatch parses one fdinfo "inotify" value ("wd:2 ino:a2 sdev:800013
// mask:fce ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:a2…",
// numbers in hex) and finds the watched file's path.
func dumpWatch(v string, t *Tree, pid int) (image.InotifyWatch, error) {
	kv := map[string]string{}
	for _, f := range strings.Fields(v) {
		k, val, ok := strings.Cut(f, ":")
		if !ok {
			return image.InotifyWatch{}, fmt.Errorf("inotify fdinfo line %q: %w", v, errBadFdinfo)
		}
		kv[k] = val
	}
	num := func(k string) (uint64, error) {
		n, err := strconv.ParseUint(kv[k], 16, 64)
		if err != nil {
			return 0, fmt.Errorf("inotify fdinfo line %q: %s: %w", v, k, errBadFdinfo)
		}
		return n, nil
	}
	var vals [6]uint64
	for i, k := range []string{"wd", "ino", "sdev", "mask", "ignored_mask", "fhandle-type"} {
		if _, ok := kv[k]; !ok && k == "fhandle-type" {
			return image.InotifyWatch{}, fmt.Errorf("inotify watch %s: the watched file's filesystem gives no file handle: %w", v, ErrUnsupported)
		}
		n, err := num(k)
		if err != nil {
			return image.InotifyWatch{}, err
		}
		vals[i] = n
	}
	wd, ino, sdev, mask, ignored, htype := vals[0], vals[1], vals[2], vals[3], vals[4], vals[5]
	if ignored != 0 {
		return image.InotifyWatch{}, fmt.Errorf("inotify watch %d: ignored_mask %#x: %w", wd, ignored, ErrUnsupported)
	}
	if wd < 1 || wd > maxInotifyWd {
		return image.InotifyWatch{}, fmt.Errorf("inotify wd %d outside 1-%d (each lower wd costs a dummy watch at restore): %w", wd, maxInotifyWd, ErrUnsupported)
	}
	handle, err := hex.DecodeString(kv["f_handle"])
	if err != nil {
		return image.InotifyWatch{}, fmt.Errorf("inotify fdinfo line %q: f_handle: %w", v, errBadFdinfo)
	}
	path, err := handlePath(unix.NewFileHandle(int32(htype), handle), sdev, ino)
	if errors.Is(err, ErrUnsupported) {
		dev := unix.Mkdev(uint32(sdev>>20), uint32(sdev&0xfffff))
		if t.holdsDeleted(dev, ino, pid) {
			return image.InotifyWatch{Wd: int(wd), Mask: uint32(mask), FileDev: dev, FileIno: ino}, nil
		}
	}
	if err != nil {
		return image.InotifyWatch{}, fmt.Errorf("inotify wd %d: %w", wd, err)
	}
	return image.InotifyWatch{Wd: int(wd), Mask: uint32(mask), Path: path}, nil
}

// handlePath opens the file of handle h on the device sdev (the kernel's
// encoding: major<<20 | minor) through each mount of that device and
// returns the first path that names inode ino on it.
func handlePath(h unix.FileHandle, sdev, ino uint64) (string, error) {
	mounts, err := mountsOf(sdev>>20, sdev&0xfffff)
	if err != nil {
		return "", err
	}
	for _, mnt := range mounts {
		// open_by_handle_at takes no O_PATH fd as its mount fd.
		m, err := unix.Open(mnt, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue
		}
		f, err := unix.OpenByHandleAt(m, h, unix.O_PATH|unix.O_CLOEXEC)
		unix.Close(m)
		if err != nil {
			continue
		}
		path, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(f))
		unix.Close(f)
		if err != nil || !strings.HasPrefix(path, "/") {
			continue
		}
		var st unix.Stat_t
		if unix.Lstat(path, &st) == nil && st.Ino == ino && uint64(unix.Major(st.Dev)) == sdev>>20 && uint64(unix.Minor(st.Dev)) == sdev&0xfffff {
			return path, nil
		}
	}
	return "", fmt.Errorf("watched inode %d on device %d:%d has no path (deleted and not held open by the tree, or on no mount rtcr sees): %w", ino, sdev>>20, sdev&0xfffff, ErrUnsupported)
}

// holdsDeleted reports whether process upTo or one before it in the tree
// (restored before it) has the deleted regular file dev:ino open: restored
// by the time upTo's fds are, so that a watch on it can be added through
// the restored file.
func (t *Tree) holdsDeleted(dev, ino uint64, upTo int) bool {
	for _, pid := range t.pids {
		nums, err := procfs.ListFDs(pid)
		if err != nil {
			continue
		}
		for _, n := range nums {
			p := fmt.Sprintf("/proc/%d/fd/%d", pid, n)
			var st unix.Stat_t
			if unix.Stat(p, &st) != nil || st.Dev != dev || st.Ino != ino || st.Nlink != 0 || st.Mode&unix.S_IFMT != unix.S_IFREG {
				continue
			}
			if link, err := os.Readlink(p); err == nil && strings.HasSuffix(link, " (deleted)") {
				return true
			}
		}
		if pid == upTo {
			break
		}
	}
	return false
}

// mountsOf returns the mount points of device major:minor in rtcr's
// mount namespace (/proc/self/mountinfo).
func mountsOf(major, minor uint64) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	want := fmt.Sprintf("%d:%d", major, minor)
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && fields[2] == want {
			out = append(out, unescapeMount(fields[4]))
		}
	}
	return out, sc.Err()
}

// unescapeMount undoes the octal escapes (\040 …) of a mountinfo path.
func unescapeMount(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// addWatches adds the watches ws (in wd order) to the new inotify fd got
// of the stub of c, from rtcr through a copy of the fd: the wds come out as
// saved, lower wds no longer in use skipped with dummy watches on a
// directory of rtcr's own, whose IN_IGNORED events are then read away.
func addWatches(c *restoreCtx, got int, ws []image.InotifyWatch) error {
	if len(ws) == 0 {
		return nil
	}
	dup, err := getfd(c.r.Pid, got)
	if err != nil {
		return err
	}
	defer unix.Close(dup)
	dummy, err := os.MkdirTemp("", "rtcr-inotify-")
	if err != nil {
		return err
	}
	defer os.Remove(dummy)
	dummies := map[int]bool{}
	next := 1
	for _, w := range ws {
		for next < w.Wd {
			wd, err := unix.InotifyAddWatch(dup, dummy, unix.IN_ATTRIB)
			if err != nil {
				return fmt.Errorf("dummy inotify watch: %w", err)
			}
			if _, err := unix.InotifyRmWatch(dup, uint32(wd)); err != nil {
				return fmt.Errorf("remove dummy inotify watch %d: %w", wd, err)
			}
			if wd != next {
				return fmt.Errorf("dummy inotify watch got wd %d, want %d", wd, next)
			}
			dummies[wd] = true
			next = wd + 1
		}
		path, follow := w.Path, uint32(unix.IN_DONT_FOLLOW)
		if path == "" {
			// The recreated deleted file, through its helper's /proc
			// link, which must be followed.
			h, ok := c.deleted[FileID{Dev: w.FileDev, Ino: w.FileIno}]
			if !ok {
				return fmt.Errorf("inotify watch %d on deleted file %d:%d: no process restored so far holds it", w.Wd, w.FileDev, w.FileIno)
			}
			path, follow = fmt.Sprintf("/proc/%d/fd/%d", h.pid, h.ends[0]), 0
		}
		wd, err := unix.InotifyAddWatch(dup, path, w.Mask|follow)
		if err != nil {
			return fmt.Errorf("inotify watch %d on %s (mask %#x): %w", w.Wd, w.Path, w.Mask, err)
		}
		if wd != w.Wd {
			return fmt.Errorf("inotify watch on %s got wd %d, want %d", w.Path, wd, w.Wd)
		}
		next = wd + 1
	}
	return drainDummies(dup, dummies)
}

// drainDummies reads the events queued on inotify fd fd, which must all be
// the IN_IGNORED of removed dummy watches.
func drainDummies(fd int, dummies map[int]bool) error {
	n, err := unix.IoctlGetInt(fd, unix.TIOCINQ)
	if err != nil || n == 0 {
		return err
	}
	buf := make([]byte, n)
	if got, err := unix.Read(fd, buf); err != nil || got != n {
		return fmt.Errorf("read %d bytes of dummy inotify events: %d, %v", n, got, err)
	}
	const hdr = int(unsafe.Sizeof(unix.InotifyEvent{}))
	for off := 0; off+hdr <= len(buf); {
		wd := int(int32(binary.NativeEndian.Uint32(buf[off:])))
		mask := binary.NativeEndian.Uint32(buf[off+4:])
		size := binary.NativeEndian.Uint32(buf[off+12:])
		if mask != unix.IN_IGNORED || !dummies[wd] {
			return fmt.Errorf("inotify event %#x on wd %d during the restore (it would be lost)", mask, wd)
		}
		off += hdr + int(size)
	}
	return nil
}
