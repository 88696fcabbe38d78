package files

import (
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// eventfdKind covers eventfds: the counter (fdinfo "eventfd-count", hex),
// EFD_SEMAPHORE and the O_NONBLOCK/O_CLOEXEC flags.
var eventfdKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		if s.link != "anon_inode:[eventfd]" {
			return image.FD{}, false, nil
		}
		count, err := strconv.ParseUint(strings.TrimSpace(s.info.Extra["eventfd-count"]), 16, 64)
		if err != nil {
			return image.FD{}, false, fmt.Errorf("eventfd-count in fdinfo: %w", err)
		}
		return image.FD{
			Flags: s.info.Flags, Desc: s.link, Count: count,
			Semaphore: strings.TrimSpace(s.info.Extra["eventfd-semaphore"]) == "1",
		}, true, nil
	},
	check: func(fd *image.FD) error { return nil },
	open: func(c *restoreCtx, fd *image.FD) (int, error) {
		flags := uint64(fd.Flags & (unix.O_NONBLOCK | unix.O_CLOEXEC))
		if fd.Semaphore {
			flags |= unix.EFD_SEMAPHORE
		}
		// eventfd2 takes an unsigned int; larger counters are added with
		// a write of the rest.
		initial := min(fd.Count, 0xffffffff)
		got, err := c.r.Syscall(unix.SYS_EVENTFD2, initial, flags)
		if err != nil {
			return -1, fmt.Errorf("eventfd2: %w", err)
		}
		if rest := fd.Count - initial; rest > 0 {
			addr, err := c.r.Put(0x800, binary.LittleEndian.AppendUint64(nil, rest))
			if err != nil {
				return -1, err
			}
			if _, err := c.r.Syscall(unix.SYS_WRITE, got, addr, 8); err != nil {
				return -1, fmt.Errorf("set eventfd counter %d: %w", fd.Count, err)
			}
		}
		return int(got), nil
	},
	fields: []string{"eventfd-count", "eventfd-id", "eventfd-semaphore"},
	// eventfd2 takes O_NONBLOCK, not the other status flags.
	exact: func(fd *image.FD) bool { return fd.Flags&statusFlags&^unix.O_NONBLOCK == 0 },
}
