package files

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// nsTypes are the namespace types whose files rtcr reopens: the names of
// /proc/PID/ns, which are also the prefixes of the files' links
// ("net:[4026531840]"; pid_for_children and time_for_children show as
// pid and time).
var nsTypes = []string{"net", "uts", "ipc", "mnt", "cgroup", "user", "pid", "time"}

// parseNsLink returns the type and inode of a namespace file's link
// ("net:[4026531840]"), ok false for another link.
func parseNsLink(link string) (typ string, ino uint64, ok bool) {
	typ, rest, found := strings.Cut(link, ":[")
	if !found || !strings.HasSuffix(rest, "]") {
		return "", 0, false
	}
	known := false
	for _, t := range nsTypes {
		known = known || t == typ
	}
	if !known {
		return "", 0, false
	}
	ino, err := strconv.ParseUint(strings.TrimSuffix(rest, "]"), 10, 64)
	if err != nil {
		return "", 0, false
	}
	return typ, ino, true
}

// nsIno returns the inode of the namespace of type typ that process pid
// ("self" for rtcr) is in.
func nsIno(pid, typ string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat("/proc/"+pid+"/ns/"+typ, &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

// nsKind covers an fd on a namespace file (open of /proc/PID/ns/TYPE, as
// zdtm's proc-self holds /proc/self/ns/net). Only the namespace the
// process itself is in, and rtcr too at the dump, is saved: that is the
// one the restored process is in again, and restore opens it as
// /proc/PID/ns/TYPE of the stub (by rtcr, given to the stub with
// SCM_RIGHTS), checking its inode is the saved one; any other namespace
// (another process's, a namespace kept alive only by the fd, the tree's
// own pid namespace under rtcr run) is refused at dump, naming it.
var nsKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		typ, ino, ok := parseNsLink(s.link)
		if !ok || s.st.Ino != ino {
			return image.FD{}, false, nil
		}
		own, err := nsIno(strconv.Itoa(s.pid), typ)
		if err != nil {
			return image.FD{}, false, fmt.Errorf("%s namespace of %d: %w", typ, s.pid, err)
		}
		mine, err := nsIno("self", typ)
		if err != nil {
			return image.FD{}, false, fmt.Errorf("rtcr's %s namespace: %w", typ, err)
		}
		if ino != own || ino != mine {
			return image.FD{}, false, fmt.Errorf("%s namespace file %s: not the namespace the process is in (%s:[%d]) and rtcr is in (%s:[%d]): %w",
				typ, s.link, typ, own, typ, mine, ErrUnsupported)
		}
		return image.FD{Flags: s.info.Flags, Desc: s.link + " (namespace)", NsType: typ, NsIno: ino}, true, nil
	},
	check: func(fd *image.FD) error {
		mine, err := nsIno("self", fd.NsType)
		if err != nil {
			return fmt.Errorf("rtcr's %s namespace: %w", fd.NsType, err)
		}
		if mine != fd.NsIno {
			return fmt.Errorf("%s namespace file %s:[%d]: the restore runs in %s:[%d], the process would be in another: %w",
				fd.NsType, fd.NsType, fd.NsIno, fd.NsType, mine, ErrUnsupported)
		}
		return nil
	},
	open: func(c *restoreCtx, fd *image.FD) (int, error) {
		path := fmt.Sprintf("/proc/%d/ns/%s", c.r.Pid, fd.NsType)
		n, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return -1, fmt.Errorf("open %s: %w", path, err)
		}
		defer unix.Close(n)
		var st unix.Stat_t
		if err := unix.Fstat(n, &st); err != nil {
			return -1, fmt.Errorf("stat %s: %w", path, err)
		}
		if st.Ino != fd.NsIno {
			return -1, fmt.Errorf("%s is %s:[%d], the image's was %s:[%d]: %w", path, fd.NsType, st.Ino, fd.NsType, fd.NsIno, ErrUnsupported)
		}
		return giveFd(c, n)
	},
}
