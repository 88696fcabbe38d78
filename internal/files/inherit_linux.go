package files

import (
	"fmt"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// inheritKind covers the standard streams (fd 0–2) when they are a
// terminal or a socket that is not an external object (see externalKind,
// tried first: pipes and connected unix sockets to outside the tree): a
// TCP connection, a listening socket (socket activation). A restore cannot
// reopen them by path.
// Restore gives the process the restorer's own fd of the same number, as a
// shell gives a program its terminal (CRIU calls this an external tty /
// inherited fd). Images of earlier versions also have pipes to outside the
// tree at fds 0–2 as inherited.
var inheritKind = kind{
	dump: func(s *fdState) (image.FD, bool, error) {
		if s.num > 2 {
			return image.FD{}, false, nil
		}
		mode := s.st.Mode & unix.S_IFMT
		tty := mode == unix.S_IFCHR && isTerminal(s.link)
		if !tty && !strings.HasPrefix(s.link, "socket:") {
			return image.FD{}, false, nil
		}
		desc := s.link
		if tty {
			desc += " (terminal)"
		}
		return image.FD{Flags: s.info.Flags, Mode: s.st.Mode, Desc: desc}, true, nil
	},
	check: func(fd *image.FD) error {
		if fd.Num > 2 {
			return fmt.Errorf("only fds 0-2 can be inherited")
		}
		return nil
	},
	open: func(c *restoreCtx, fd *image.FD) (int, error) {
		r := c.r
		// The stub was started with the restorer's fds 0–2.
		if _, err := r.Syscall(unix.SYS_FCNTL, uint64(fd.Num), unix.F_GETFD); err != nil {
			return -1, fmt.Errorf("inherit fd %d: rtcr's own fd %d is not open: %w", fd.Num, fd.Num, err)
		}
		return fd.Num, nil
	},
	inherited: true,
}

func isTerminal(path string) bool {
	return strings.HasPrefix(path, "/dev/pts/") || strings.HasPrefix(path, "/dev/tty") || path == "/dev/console"
}
