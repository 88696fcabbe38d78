package inspect

import (
	"fmt"
	"io"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// writeExternals lists the external objects of the image (pipes and
// sockets whose other end was outside the tree): every fd that had one,
// with its ID, pid and fd number, and what a restore does with it.
func writeExternals(w io.Writer, c *image.Checkpoint) {
	n := 0
	for i := range c.Processes {
		for _, fd := range c.Processes[i].FDs {
			if fd.Kind == image.FDExternal && fd.External != nil {
				n++
			}
		}
	}
	fmt.Fprintf(w, "\nExternal objects (%d fds)\n", n)
	if n == 0 {
		fmt.Fprintf(w, "  (none)\n")
		return
	}
	fmt.Fprintf(w, "  connect one with rtcr restore --inherit-fd FD:ID; without it fds 0-2 get rtcr's own, others a pipe or socket pair whose other end is closed\n")
	tw := newTable(w)
	fmt.Fprintf(tw, "  ID\tPID\tFD\tWHAT\tBUFFERED\n")
	for i := range c.Processes {
		p := &c.Processes[i]
		for _, fd := range p.FDs {
			if fd.Kind == image.FDExternal && fd.External != nil {
				fmt.Fprintf(tw, "  %s\t%d\t%d\t%s\t%s\n", fd.External.ID, p.Pid, fd.Num, externalWhat(&fd), externalBuffered(fd.External))
			}
		}
	}
	tw.Flush()
}

// externalWhat names the end of a pipe or the type of a socket.
func externalWhat(fd *image.FD) string {
	e := fd.External
	if e.Type == image.ExtPipe {
		if fd.Flags&unix.O_ACCMODE == unix.O_RDONLY {
			return "pipe, read end"
		}
		return "pipe, write end"
	}
	switch e.SockType {
	case unix.SOCK_STREAM:
		return "unix socket, stream"
	case unix.SOCK_DGRAM:
		return "unix socket, datagram"
	case unix.SOCK_SEQPACKET:
		return "unix socket, seqpacket"
	}
	return fmt.Sprintf("%s, type %d", e.Type, e.SockType)
}

// externalBuffered says what was saved to be read back ("-": nothing, or
// recorded on another fd of the same ID).
func externalBuffered(e *image.External) string {
	if len(e.Data) > 0 {
		return HumanSize(int64(len(e.Data)))
	}
	if e.Sock != nil && len(e.Sock.Queue) > 0 {
		n := 0
		for _, m := range e.Sock.Queue {
			n += len(m)
		}
		return fmt.Sprintf("%s in %d messages", HumanSize(int64(n)), len(e.Sock.Queue))
	}
	return "-"
}
