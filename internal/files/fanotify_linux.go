package files

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// fanotifyKind covers fanotify groups of class FAN_CLASS_NOTIF (fdinfo
// "fanotify" lines): fanotify_init's flags and event flags, and every
// mark with its flags, mask and ignored mask. An inode mark's file is
// found from its file handle as an inotify watch's is (handlePath) and
// recorded by path; a mount mark by its mount point, which must name that
// mount (statx's mount id); a filesystem mark by a mount point of the
// filesystem. Restore makes the group with fanotify_init in the stub and
// adds each mark again by path (FAN_MARK_DONT_FOLLOW for inode marks),
// the ignored mask by a second fanotify_mark. Refused: queued events
// (FIONREAD; not saved), the classes with permission events (content,
// pre-content: an event read and not answered yet cannot be seen), a
// marked file with no path, mount-namespace marks and any fdinfo line
// rtcr does not know.
var fanotifyKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		if s.link != "anon_inode:[fanotify]" {
			return image.FD{}, false, nil
		}
		if n, err := inotifyQueued(s); err != nil {
			return image.FD{}, false, err
		} else if n != 0 {
			return image.FD{}, false, fmt.Errorf("%d bytes of queued fanotify events (not saved): %w", n, ErrUnsupported)
		}
		g := &image.Fanotify{}
		seen := false
		for _, line := range s.info.Values("fanotify") {
			kv, err := fanotifyFields(line)
			if err != nil {
				return image.FD{}, false, err
			}
			if _, ok := kv["flags"]; ok {
				flags, ef := kv["flags"], kv["event-flags"]
				g.Flags, g.EventFlags = uint32(flags), uint32(ef)
				seen = true
				continue
			}
			m, err := dumpFanotifyMark(line, kv)
			if err != nil {
				return image.FD{}, false, err
			}
			g.Marks = append(g.Marks, m)
		}
		if !seen {
			return image.FD{}, false, fmt.Errorf("fanotify group without its flags in fdinfo: %w", errBadFdinfo)
		}
		if c := g.Flags & (unix.FAN_CLASS_CONTENT | unix.FAN_CLASS_PRE_CONTENT); c != 0 {
			return image.FD{}, false, fmt.Errorf("fanotify group of class %#x (permission events): %w", c, ErrUnsupported)
		}
		g.Flags &^= unix.FAN_CLOEXEC | unix.FAN_NONBLOCK
		if other := g.Flags &^ (unix.FAN_UNLIMITED_QUEUE | unix.FAN_UNLIMITED_MARKS | unix.FAN_REPORT_PIDFD | unix.FAN_REPORT_TID |
			unix.FAN_REPORT_FID | unix.FAN_REPORT_DIR_FID | unix.FAN_REPORT_NAME | unix.FAN_REPORT_TARGET_FID); other != 0 {
			return image.FD{}, false, fmt.Errorf("fanotify group with init flags %#x: %w", other, ErrUnsupported)
		}
		// Marks come newest first in fdinfo, and are kept so.
		return image.FD{Flags: s.info.Flags, Desc: s.link, Fanotify: g}, true, nil
	},
	check: func(fd *image.FD) error {
		for _, m := range fd.Fanotify.Marks {
			if _, err := os.Lstat(m.Path); err != nil {
				return fmt.Errorf("fanotify %s mark: %w", m.Kind, err)
			}
		}
		return nil
	},
	open: func(c *restoreCtx, fd *image.FD) (int, error) {
		g := fd.Fanotify
		flags := uint64(g.Flags)
		if fd.Flags&unix.O_NONBLOCK != 0 {
			flags |= unix.FAN_NONBLOCK
		}
		if fd.Flags&unix.O_CLOEXEC != 0 {
			flags |= unix.FAN_CLOEXEC
		}
		got, err := c.r.Syscall(unix.SYS_FANOTIFY_INIT, flags, uint64(g.EventFlags))
		if err != nil {
			return -1, fmt.Errorf("fanotify_init(%#x, %#x): %w", flags, g.EventFlags, err)
		}
		// fdinfo lists the newest mark first: added oldest first, they
		// come out in the same order.
		for i := len(g.Marks) - 1; i >= 0; i-- {
			if err := addFanotifyMark(c.r, int(got), g.Marks[i]); err != nil {
				_ = c.r.Close(int(got))
				return -1, err
			}
		}
		return int(got), nil
	},
	fields: []string{"fanotify"},
	// fanotify_init takes O_NONBLOCK and O_CLOEXEC (as FAN_*), not the
	// other status flags.
	exact: func(fd *image.FD) bool { return fd.Flags&statusFlags&^unix.O_NONBLOCK == 0 },
}

// fanotifyFields parses the numbers (hex) of an fdinfo "fanotify" value
// ("flags:12 event-flags:8000", "ino:9840be sdev:fe00000 mflags:0
// mask:3b ignored_mask:0 fhandle-bytes:8 fhandle-type:1 f_handle:be40…",
// "mnt_id:1a mflags:40 …", "sdev:fe00000 mflags:0 …"); f_handle is left
// out (fanotifyHandle reads it).
func fanotifyFields(v string) (map[string]uint64, error) {
	kv := map[string]uint64{}
	for _, f := range strings.Fields(v) {
		k, val, ok := strings.Cut(f, ":")
		if !ok {
			return nil, fmt.Errorf("fanotify fdinfo line %q: %w", v, errBadFdinfo)
		}
		if k == "f_handle" {
			continue
		}
		n, err := strconv.ParseUint(val, 16, 64)
		if err != nil {
			return nil, fmt.Errorf("fanotify fdinfo line %q: %s: %w", v, k, errBadFdinfo)
		}
		kv[k] = n
	}
	return kv, nil
}

// dumpFanotifyMark makes the mark of one fdinfo "fanotify" value v
// (parsed into kv) and finds the path it is added on again.
func dumpFanotifyMark(v string, kv map[string]uint64) (image.FanotifyMark, error) {
	for _, k := range []string{"mflags", "mask", "ignored_mask"} {
		if _, ok := kv[k]; !ok {
			return image.FanotifyMark{}, fmt.Errorf("fanotify fdinfo line %q: no %s: %w", v, k, errBadFdinfo)
		}
	}
	m := image.FanotifyMark{Flags: uint32(kv["mflags"]), Mask: uint32(kv["mask"]), IgnoredMask: uint32(kv["ignored_mask"])}
	if m.Flags&^image.FanMarkFlags != 0 || kv["mask"] > 0xffffffff || kv["ignored_mask"] > 0xffffffff {
		return m, fmt.Errorf("fanotify mark %q: flags or masks rtcr does not know: %w", v, ErrUnsupported)
	}
	_, hasIno := kv["ino"]
	_, hasMnt := kv["mnt_id"]
	_, hasDev := kv["sdev"]
	switch {
	case hasIno && hasDev:
		m.Kind = image.FanMarkInode
		if _, ok := kv["fhandle-type"]; !ok {
			return m, fmt.Errorf("fanotify mark on inode %d: its filesystem gives no file handle: %w", kv["ino"], ErrUnsupported)
		}
		handle, err := fanotifyHandle(v)
		if err != nil {
			return m, err
		}
		path, err := handlePath(unix.NewFileHandle(int32(kv["fhandle-type"]), handle), kv["sdev"], kv["ino"])
		if err != nil {
			return m, fmt.Errorf("fanotify mark: %w", err)
		}
		m.Path = path
	case hasMnt:
		m.Kind = image.FanMarkMount
		path, err := mountPoint(kv["mnt_id"])
		if err != nil {
			return m, err
		}
		m.Path = path
	case hasDev:
		m.Kind = image.FanMarkFilesystem
		mounts, err := mountsOf(kv["sdev"]>>20, kv["sdev"]&0xfffff)
		if err != nil {
			return m, err
		}
		if len(mounts) == 0 {
			return m, fmt.Errorf("fanotify mark on filesystem %d:%d, which rtcr sees no mount of: %w", kv["sdev"]>>20, kv["sdev"]&0xfffff, ErrUnsupported)
		}
		m.Path = mounts[0]
	default:
		return m, fmt.Errorf("fanotify mark %q of a kind rtcr does not know: %w", v, ErrUnsupported)
	}
	return m, nil
}

// fanotifyHandle returns the f_handle bytes of an fdinfo "fanotify" value.
func fanotifyHandle(v string) ([]byte, error) {
	for _, f := range strings.Fields(v) {
		if h, ok := strings.CutPrefix(f, "f_handle:"); ok {
			b, err := hex.DecodeString(h)
			if err != nil {
				return nil, fmt.Errorf("fanotify fdinfo line %q: f_handle: %w", v, errBadFdinfo)
			}
			return b, nil
		}
	}
	return nil, fmt.Errorf("fanotify fdinfo line %q: no f_handle: %w", v, errBadFdinfo)
}

// mountPoint returns the mount point of mount id in rtcr's mount
// namespace (/proc/self/mountinfo), which must name that mount now (no
// mount on top of it).
func mountPoint(id uint64) (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	want := strconv.FormatUint(id, 10)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 || fields[0] != want {
			continue
		}
		path := unescapeMount(fields[4])
		var stx unix.Statx_t
		if err := unix.Statx(unix.AT_FDCWD, path, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx); err != nil || stx.Mnt_id != id {
			return "", fmt.Errorf("fanotify mark on mount %d at %s, which another mount hides: %w", id, path, ErrUnsupported)
		}
		return path, nil
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", fmt.Errorf("fanotify mark on mount %d, not in rtcr's mount namespace: %w", id, ErrUnsupported)
}

// addFanotifyMark adds mark m to the fanotify group fd of the stub r:
// its mask, then its ignored mask (FAN_MARK_IGNORE when the mark had it,
// else FAN_MARK_IGNORED_MASK), with its flags.
func addFanotifyMark(r *ptrace.Remote, fd int, m image.FanotifyMark) error {
	path, err := r.Put(ptrace.DataOff, append([]byte(m.Path), 0))
	if err != nil {
		return err
	}
	flags := uint64(unix.FAN_MARK_ADD)
	switch m.Kind {
	case image.FanMarkInode:
		flags |= unix.FAN_MARK_DONT_FOLLOW
	case image.FanMarkMount:
		flags |= unix.FAN_MARK_MOUNT
	case image.FanMarkFilesystem:
		flags |= unix.FAN_MARK_FILESYSTEM
	}
	flags |= uint64(m.Flags & unix.FAN_MARK_EVICTABLE)
	if m.Mask != 0 {
		if _, err := r.Syscall(unix.SYS_FANOTIFY_MARK, uint64(fd), flags, uint64(m.Mask), atFDCWD, path); err != nil {
			return fmt.Errorf("fanotify %s mark on %s, mask %#x: %w", m.Kind, m.Path, m.Mask, err)
		}
	}
	if m.IgnoredMask != 0 {
		ign := flags | uint64(m.Flags&unix.FAN_MARK_IGNORED_SURV_MODIFY)
		if m.Flags&unix.FAN_MARK_IGNORE != 0 {
			ign |= unix.FAN_MARK_IGNORE
		} else {
			ign |= unix.FAN_MARK_IGNORED_MASK
		}
		if _, err := r.Syscall(unix.SYS_FANOTIFY_MARK, uint64(fd), ign, uint64(m.IgnoredMask), atFDCWD, path); err != nil {
			return fmt.Errorf("fanotify %s mark on %s, ignored mask %#x: %w", m.Kind, m.Path, m.IgnoredMask, err)
		}
	}
	return nil
}
