package image

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// ExternalID returns the ID of an external object of type typ ("pipe" or
// "socket") with inode ino, as /proc/PID/fd shows it: "pipe:[ino]".
func ExternalID(typ string, ino uint64) string {
	return fmt.Sprintf("%s:[%d]", typ, ino)
}

// validateExternal checks an external fd: a known type, an ID that is
// exactly the one its type and inode give, a socket type restore can
// create, and at most MaxMemfdData bytes queued (a pipe: at most its
// capacity).
func validateExternal(fd *FD) error {
	e := fd.External
	if e == nil || e.Ino == 0 {
		return fmt.Errorf("without an object")
	}
	if e.ID != ExternalID(e.Type, e.Ino) {
		return fmt.Errorf("ID %q of a %q with inode %d, want %q", e.ID, e.Type, e.Ino, ExternalID(e.Type, e.Ino))
	}
	switch e.Type {
	case ExtPipe:
		if e.SockType != 0 || e.Sock != nil || e.PipeSize < 0 || e.PipeSize > maxPipeData || len(e.Data) > e.PipeSize {
			return fmt.Errorf("%s: pipe of %d bytes with %d buffered (socket type %d)", e.ID, e.PipeSize, len(e.Data), e.SockType)
		}
	case ExtSocket:
		switch e.SockType {
		case unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_SEQPACKET:
		default:
			return fmt.Errorf("%s: socket of type %d", e.ID, e.SockType)
		}
		if e.PipeSize != 0 || len(e.Data) != 0 {
			return fmt.Errorf("%s: socket with pipe size %d and %d pipe bytes", e.ID, e.PipeSize, len(e.Data))
		}
		if st := e.Sock; st != nil {
			total := 0
			for _, m := range st.Queue {
				if len(m) == 0 {
					return fmt.Errorf("%s: an empty message queued", e.ID)
				}
				total += len(m)
			}
			if total > MaxMemfdData || st.SndBuf < 0 || st.RcvBuf < 0 || st.SndTimeo < 0 || st.RcvTimeo < 0 || st.PeekOff < -1 {
				return fmt.Errorf("%s: %d bytes queued (at most %d), buffers %d/%d, timeouts %d/%d, peek offset %d", e.ID, total, MaxMemfdData, st.SndBuf, st.RcvBuf, st.SndTimeo, st.RcvTimeo, st.PeekOff)
			}
		}
	default:
		return fmt.Errorf("%s: unknown type %q", e.ID, e.Type)
	}
	return nil
}

// validateExternals checks that the fds of the tree with one external ID
// agree on what it is and that only the first holds its buffered bytes and socket state
// (restore creates the object from that one).
func validateExternals(procs []Process) error {
	first := map[string]*External{}
	for i := range procs {
		for j := range procs[i].FDs {
			fd := &procs[i].FDs[j]
			e := fd.External
			if fd.Kind != FDExternal || e == nil {
				continue
			}
			f, ok := first[e.ID]
			if !ok {
				first[e.ID] = e
				continue
			}
			if e.Type != f.Type || e.SockType != f.SockType || e.PipeSize != f.PipeSize || len(e.Data) > 0 || e.Sock != nil {
				return fmt.Errorf("pid %d: fd %d: %s differs from its first fd or holds buffered bytes, which only the first may", procs[i].Pid, fd.Num, e.ID)
			}
		}
	}
	return nil
}
