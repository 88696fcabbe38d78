package image

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// FDFanotify is a fanotify group with its marks.
const FDFanotify = "fanotify"

// Fanotify is a fanotify group of class FAN_CLASS_NOTIF: the flags
// fanotify_init took (FAN_CLOEXEC and FAN_NONBLOCK left to the fd's
// flags), the flags of the fds its events open (event_f_flags) and its
// marks.
type Fanotify struct {
	Flags      uint32
	EventFlags uint32
	Marks      []FanotifyMark `json:",omitempty"`
}

// Kinds of fanotify marks.
const (
	FanMarkInode      = "inode"      // a file or directory
	FanMarkMount      = "mount"      // a mount (FAN_MARK_MOUNT)
	FanMarkFilesystem = "filesystem" // a filesystem (FAN_MARK_FILESYSTEM)
)

// FanotifyMark is one mark of a fanotify group: its kind (FanMark*), the
// path it is added on again (the marked file, the mount's mount point, a
// mount point of the filesystem), its flags as fdinfo shows them
// (FAN_MARK_IGNORED_SURV_MODIFY, FAN_MARK_EVICTABLE, FAN_MARK_IGNORE),
// its event mask and its ignored mask.
type FanotifyMark struct {
	Kind        string
	Path        string
	Flags       uint32 `json:",omitempty"`
	Mask        uint32 `json:",omitempty"`
	IgnoredMask uint32 `json:",omitempty"`
}

const (
	// maxFanotifyMarks bounds the marks of one fanotify group.
	maxFanotifyMarks = 1 << 16
	// fanInitFlags are the fanotify_init flags an image may name.
	fanInitFlags = unix.FAN_UNLIMITED_QUEUE | unix.FAN_UNLIMITED_MARKS | unix.FAN_REPORT_PIDFD | unix.FAN_REPORT_TID |
		unix.FAN_REPORT_FID | unix.FAN_REPORT_DIR_FID | unix.FAN_REPORT_NAME | unix.FAN_REPORT_TARGET_FID
	// fanEventFlags are the event_f_flags an image may name.
	fanEventFlags = unix.O_ACCMODE | oLargefile | unix.O_CLOEXEC | unix.O_APPEND | unix.O_DSYNC | unix.O_NOATIME | unix.O_NONBLOCK | unix.O_SYNC
	// FanMarkFlags are the mark flags fdinfo shows and an image may name.
	FanMarkFlags = unix.FAN_MARK_IGNORED_SURV_MODIFY | unix.FAN_MARK_EVICTABLE | unix.FAN_MARK_IGNORE
	// oLargefile is O_LARGEFILE as the kernel sets it on 64-bit (0 in x/sys there).
	oLargefile = 0o100000
	// capSysAdmin is CAP_SYS_ADMIN (linux/capability.h).
	capSysAdmin = 21
)

// validateFanotify checks a fanotify fd of an image: known init and
// event flags, a notification class, at most maxFanotifyMarks marks of a
// known kind on absolute clean paths with known flags.
func validateFanotify(fd *FD) error {
	f := fd.Fanotify
	if f == nil {
		return fmt.Errorf("without its group")
	}
	if f.Flags&^fanInitFlags != 0 || f.EventFlags&^fanEventFlags != 0 {
		return fmt.Errorf("flags %#x, event flags %#x", f.Flags, f.EventFlags)
	}
	if len(f.Marks) > maxFanotifyMarks {
		return fmt.Errorf("%d marks, at most %d", len(f.Marks), maxFanotifyMarks)
	}
	for _, m := range f.Marks {
		switch m.Kind {
		case FanMarkInode, FanMarkMount, FanMarkFilesystem:
		default:
			return fmt.Errorf("mark of kind %q", m.Kind)
		}
		if !isCleanAbs(m.Path) || m.Flags&^FanMarkFlags != 0 {
			return fmt.Errorf("%s mark on %q with flags %#x: paths absolute and clean", m.Kind, m.Path, m.Flags)
		}
	}
	return nil
}

// checkFanotify refuses, unless owner is root or has CAP_SYS_ADMIN, a
// fanotify fd of p: fanotify_init needs that capability for the groups
// rtcr restores, and rtcr's stub is root when it makes them.
func checkFanotify(p *Process, owner Owner) error {
	if owner.Root || owner.Caps&(1<<capSysAdmin) != 0 {
		return nil
	}
	for i := range p.FDs {
		if p.FDs[i].Kind == FDFanotify {
			return fmt.Errorf("fd %d: fanotify group without CAP_SYS_ADMIN (uid %d)", p.FDs[i].Num, owner.Uid)
		}
	}
	return nil
}
