package files

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// signalfdKind covers signalfds: the signal mask (fdinfo "sigmask", hex,
// bit n-1 for signal n) and the O_NONBLOCK/O_CLOEXEC flags. The signals a
// signalfd reads are the pending signals of the process and thread that
// read it, restored with them; the fd holds none itself.
var signalfdKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		if s.link != "anon_inode:[signalfd]" {
			return image.FD{}, false, nil
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(s.info.Extra["sigmask"]), 16, 64)
		if err != nil {
			return image.FD{}, false, fmt.Errorf("sigmask in fdinfo: %w", err)
		}
		return image.FD{Flags: s.info.Flags, Desc: s.link, SigMask: mask}, true, nil
	},
	check: func(fd *image.FD) error { return nil },
	open: func(c *restoreCtx, fd *image.FD) (int, error) {
		addr, err := c.r.Put(ptrace.ArgOff, binary.LittleEndian.AppendUint64(nil, fd.SigMask))
		if err != nil {
			return -1, err
		}
		flags := uint64(fd.Flags & (unix.O_NONBLOCK | unix.O_CLOEXEC))
		got, err := c.r.Syscall(unix.SYS_SIGNALFD4, ^uint64(0), addr, 8, flags)
		if err != nil {
			return -1, fmt.Errorf("signalfd4 mask %#x: %w", fd.SigMask, err)
		}
		return int(got), nil
	},
	fields: []string{"sigmask"},
	// signalfd4 takes O_NONBLOCK, not the other status flags.
	exact: func(fd *image.FD) bool { return fd.Flags&statusFlags&^unix.O_NONBLOCK == 0 },
}
