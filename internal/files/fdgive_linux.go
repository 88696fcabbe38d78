package files

import (
	"fmt"

	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// msghdr and iovec are struct msghdr and struct iovec of x86_64, with
// addresses in the stub.
type msghdr struct {
	name       uint64
	namelen    uint32
	_          uint32
	iov        uint64
	iovlen     uint64
	control    uint64
	controllen uint64
	flags      int32
	_          int32
}

type iovec struct {
	base, len uint64
}

// Scratch offsets of giveFd's recvmsg arguments, within the argument area.
const (
	giveMsgOff  = ptrace.ArgOff
	giveIovOff  = ptrace.ArgOff + 0x40
	giveByteOff = ptrace.ArgOff + 0x60
	giveCtlOff  = ptrace.ArgOff + 0x80
)

// giveFd gives the stub of c a copy of rtcr's own fd n (the same open
// file) and returns its number there, at or above c.tempBase and
// close-on-exec. rtcr sends it with SCM_RIGHTS through a datagram socket
// pair made in the stub: unlike pidfd_getfd from the stub, this works
// whatever pid namespace the stub is in.
func giveFd(c *restoreCtx, n int) (int, error) {
	ends, err := createSocketPair(c, unix.SOCK_DGRAM)
	if err != nil {
		return -1, err
	}
	defer c.r.Close(ends[0])
	defer c.r.Close(ends[1])
	mine, err := getfd(c.r.Pid, ends[0])
	if err != nil {
		return -1, err
	}
	err = unix.Sendmsg(mine, []byte{0}, unix.UnixRights(n), nil, unix.MSG_DONTWAIT)
	unix.Close(mine)
	if err != nil {
		return -1, fmt.Errorf("send fd %d: %w", n, err)
	}
	ctlLen := unix.CmsgSpace(4)
	byteAddr, err := c.r.Put(giveByteOff, []byte{0})
	if err != nil {
		return -1, err
	}
	ctlAddr, err := c.r.Put(giveCtlOff, make([]byte, ctlLen))
	if err != nil {
		return -1, err
	}
	iov := iovec{base: byteAddr, len: 1}
	iovAddr, err := c.r.Put(giveIovOff, ptrace.Bytes(&iov))
	if err != nil {
		return -1, err
	}
	m := msghdr{iov: iovAddr, iovlen: 1, control: ctlAddr, controllen: uint64(ctlLen)}
	msgAddr, err := c.r.Put(giveMsgOff, ptrace.Bytes(&m))
	if err != nil {
		return -1, err
	}
	if _, err := c.r.Syscall(unix.SYS_RECVMSG, uint64(ends[1]), msgAddr, unix.MSG_CMSG_CLOEXEC|unix.MSG_DONTWAIT); err != nil {
		return -1, fmt.Errorf("recvmsg in %d: %w", c.r.Pid, err)
	}
	ctl := make([]byte, ctlLen)
	if err := c.r.Get(giveCtlOff, ctl); err != nil {
		return -1, err
	}
	msgs, err := unix.ParseSocketControlMessage(ctl)
	if err != nil || len(msgs) != 1 {
		return -1, fmt.Errorf("fd %d did not arrive in %d (%d control messages): %v", n, c.r.Pid, len(msgs), err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return -1, fmt.Errorf("fd %d did not arrive in %d: %v", n, c.r.Pid, err)
	}
	got := uint64(fds[0])
	high, err := c.r.Syscall(unix.SYS_FCNTL, got, unix.F_DUPFD_CLOEXEC, uint64(c.tempBase))
	if cerr := c.r.Close(int(got)); err == nil && cerr != nil {
		return -1, cerr
	}
	if err != nil {
		return -1, fmt.Errorf("move received fd: %w", err)
	}
	return int(high), nil
}
