package files

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// unixPairKind covers unnamed AF_UNIX sockets connected to a peer that is
// held in the tree too (socketpair(2), possibly inherited across fork).
// sock_diag tells the socket's type, state, name, peer, shutdown state
// and queue length; the messages queued to it are read by rtcr on a
// pidfd_getfd copy with MSG_PEEK, walking them with SO_PEEK_OFF (the
// process's own peek offset is put back). Restore creates the pair once,
// in the first process that has either end, keeps both ends as helper
// fds (as for pipes), and gives every fd a copy of its end; the queued
// messages are sent again through the other end, one sendmsg per message.
// Other sockets (other families, named, listening, a peer outside the
// tree) are refused.
var unixPairKind = kind{
	dump:  dumpUnixPair,
	check: func(fd *image.FD) error { return nil },
	open:  openUnixPair,
	// scm_fds: the fds in flight in the messages queued to the socket;
	// only 0 is accepted (dumpUnixPair).
	fields: []string{"scm_fds"},
}

// unixInfo is what sock_diag tells of one AF_UNIX socket.
type unixInfo struct {
	typ, state int
	peer       uint32
	named      bool
	rqueue     uint32
	shutdown   int // -1: not reported
}

func dumpUnixPair(s *fdState) (image.FD, bool, error) {
	if !strings.HasPrefix(s.link, "socket:") {
		return image.FD{}, false, nil
	}
	dup, err := s.copy()
	if err != nil {
		return image.FD{}, false, err
	}
	defer unix.Close(dup)
	if dom, err := unix.GetsockoptInt(dup, unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil || dom != unix.AF_UNIX {
		return image.FD{}, false, nil // refused as "sockets"
	}
	if n := strings.TrimSpace(s.info.Extra["scm_fds"]); n != "" && n != "0" {
		return image.FD{}, false, fmt.Errorf("queued messages on a unix socket carry %s file descriptors (SCM_RIGHTS, fdinfo scm_fds): %w", n, ErrUnsupported)
	}
	ino := s.st.Ino
	info, err := unixDiag(uint32(ino))
	if err != nil {
		return image.FD{}, false, err
	}
	switch {
	case info.named:
		return image.FD{}, false, fmt.Errorf("unix socket with a name (bound): %w", ErrUnsupported)
	case info.state == abi.TCP_LISTEN:
		return image.FD{}, false, fmt.Errorf("listening unix socket: %w", ErrUnsupported)
	case info.peer == 0:
		return image.FD{}, false, fmt.Errorf("unconnected unix socket: %w", ErrUnsupported)
	case !s.tree.sockets[uint64(info.peer)]:
		return image.FD{}, false, fmt.Errorf("unix socket connected to socket:[%d], not held in the dumped tree: %w", info.peer, ErrUnsupported)
	case info.shutdown != 0:
		return image.FD{}, false, fmt.Errorf("unix socket shut down (shutdown state %d, reported %v): %w", info.shutdown, info.shutdown >= 0, ErrUnsupported)
	}
	switch info.typ {
	case unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_SEQPACKET:
	default:
		return image.FD{}, false, fmt.Errorf("unix socket of type %d: %w", info.typ, ErrUnsupported)
	}
	peer, err := unixDiag(info.peer)
	if err != nil {
		return image.FD{}, false, fmt.Errorf("peer socket:[%d]: %w", info.peer, err)
	}
	if uint64(peer.peer) != ino || peer.named {
		return image.FD{}, false, fmt.Errorf("unix socket connected to socket:[%d], which is not a pair with it: %w", info.peer, ErrUnsupported)
	}
	fd := image.FD{Flags: s.info.Flags, Desc: s.link, Sock: &image.UnixSock{Ino: ino, Peer: uint64(info.peer), Type: info.typ}}
	if s.tree.socksSaved[ino] {
		return fd, true, nil
	}
	st, err := dumpSockState(dup, info.typ)
	if err != nil {
		return image.FD{}, false, err
	}
	total := 0
	for _, m := range st.Queue {
		total += len(m)
	}
	if info.typ == unix.SOCK_DGRAM && len(st.Queue) > 0 {
		total = len(st.Queue[0]) // sock_diag tells the first datagram only
	}
	if uint32(total) != info.rqueue {
		return image.FD{}, false, fmt.Errorf("read %d queued bytes, sock_diag tells %d", total, info.rqueue)
	}
	s.tree.socksSaved[ino] = true
	fd.Sock.State = st
	return fd, true, nil
}

// dumpSockState reads the options and the queued messages of socket fd.
func dumpSockState(fd, typ int) (*image.UnixSockState, error) {
	st := &image.UnixSockState{}
	var err error
	pass, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED)
	if err != nil {
		return nil, fmt.Errorf("getsockopt SO_PASSCRED: %w", err)
	}
	st.PassCred = pass != 0
	if st.SndBuf, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF); err != nil {
		return nil, fmt.Errorf("getsockopt SO_SNDBUF: %w", err)
	}
	if st.RcvBuf, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF); err != nil {
		return nil, fmt.Errorf("getsockopt SO_RCVBUF: %w", err)
	}
	if st.PeekOff, err = unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF); err != nil {
		return nil, fmt.Errorf("getsockopt SO_PEEK_OFF: %w", err)
	}
	for _, o := range []struct {
		opt int
		to  *int64
	}{{unix.SO_SNDTIMEO, &st.SndTimeo}, {unix.SO_RCVTIMEO, &st.RcvTimeo}} {
		tv, err := unix.GetsockoptTimeval(fd, unix.SOL_SOCKET, o.opt)
		if err != nil {
			return nil, fmt.Errorf("getsockopt timeout %d: %w", o.opt, err)
		}
		*o.to = tv.Sec*1e6 + tv.Usec
	}
	if st.Queue, err = peekQueue(fd, typ, st.PeekOff); err != nil {
		return nil, err
	}
	return st, nil
}

// maxSockMsg is the largest queued message rtcr reads.
const maxSockMsg = 4 << 20

// peekQueue returns the messages queued to socket fd, leaving them there:
// it sets the peek offset to 0, peeks every message in turn (each peek
// moves the offset past it) and puts the offset back to peekOff.
//
// Changing the peek offset changes the target's socket: were rtcr killed
// before putting it back, the target would keep the changed offset. So an
// empty queue (the usual case) is found with a plain peek first, which
// changes nothing while the offset is off (-1), and the offset is only
// touched when there is something to walk.
func peekQueue(fd, typ, peekOff int) (q [][]byte, err error) {
	if peekOff == -1 {
		var b [1]byte
		if _, _, _, _, err := unix.Recvmsg(fd, b[:], nil, unix.MSG_PEEK|unix.MSG_DONTWAIT); errors.Is(err, unix.EAGAIN) {
			return nil, nil
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0); err != nil {
		return nil, fmt.Errorf("setsockopt SO_PEEK_OFF: %w", err)
	}
	defer func() {
		if e := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PEEK_OFF, peekOff); e != nil && err == nil {
			err = fmt.Errorf("put back SO_PEEK_OFF %d: %w", peekOff, e)
		}
	}()
	buf := make([]byte, maxSockMsg)
	oob := make([]byte, 4096)
	total := 0
	for {
		n, oobn, flags, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return q, nil
		}
		if err != nil {
			return nil, fmt.Errorf("recvmsg MSG_PEEK: %w", err)
		}
		if oobn > 0 || flags&unix.MSG_CTRUNC != 0 {
			return nil, refuseControl(oob[:oobn])
		}
		if flags&unix.MSG_TRUNC != 0 {
			return nil, fmt.Errorf("queued message larger than %d bytes: %w", maxSockMsg, ErrUnsupported)
		}
		if n == 0 {
			if typ == unix.SOCK_STREAM {
				return q, nil
			}
			return nil, fmt.Errorf("empty message queued on a unix socket: %w", ErrUnsupported)
		}
		total += n
		if total > image.MaxMemfdData {
			return nil, fmt.Errorf("more than %d bytes queued on a unix socket: %w", image.MaxMemfdData, ErrUnsupported)
		}
		q = append(q, append([]byte(nil), buf[:n]...))
	}
}

// refuseControl returns the error for a queued message with control data
// (closing any fds the peek gave rtcr).
func refuseControl(oob []byte) error {
	what := "control data"
	msgs, _ := unix.ParseSocketControlMessage(oob)
	for i := range msgs {
		h := msgs[i].Header
		if h.Level != unix.SOL_SOCKET {
			continue
		}
		switch h.Type {
		case unix.SCM_RIGHTS:
			what = "file descriptors (SCM_RIGHTS)"
			if fds, err := unix.ParseUnixRights(&msgs[i]); err == nil {
				for _, f := range fds {
					unix.Close(f)
				}
			}
		case unix.SCM_CREDENTIALS:
			if what == "control data" {
				what = "credentials (SCM_CREDENTIALS)"
			}
		}
	}
	return fmt.Errorf("queued message on a unix socket carries %s: %w", what, ErrUnsupported)
}

// unixDiag asks sock_diag about the AF_UNIX socket with inode ino (in
// rtcr's network namespace).
func unixDiag(ino uint32) (*unixInfo, error) {
	nl, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sock_diag socket: %w", err)
	}
	defer unix.Close(nl)
	req := abi.UnixDiagReq{
		Family: unix.AF_UNIX,
		States: ^uint32(0),
		Ino:    ino,
		Show:   abi.UDIAG_SHOW_NAME | abi.UDIAG_SHOW_PEER | abi.UDIAG_SHOW_RQLEN,
		Cookie: [2]uint32{^uint32(0), ^uint32(0)},
	}
	body := ptrace.Bytes(&req)
	hdr := unix.NlMsghdr{Len: uint32(unix.NLMSG_HDRLEN + len(body)), Type: abi.SOCK_DIAG_BY_FAMILY, Flags: unix.NLM_F_REQUEST, Seq: 1}
	msg := append(append([]byte(nil), ptrace.Bytes(&hdr)...), body...)
	if err := unix.Sendto(nl, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag request: %w", err)
	}
	rb := make([]byte, 16384)
	n, _, err := unix.Recvfrom(nl, rb, 0)
	if err != nil {
		return nil, fmt.Errorf("sock_diag answer: %w", err)
	}
	msgs, err := syscall.ParseNetlinkMessage(rb[:n])
	if err != nil || len(msgs) == 0 {
		return nil, fmt.Errorf("sock_diag answer: %w (%d bytes)", errBadFdinfo, n)
	}
	m := msgs[0]
	if m.Header.Type == unix.NLMSG_ERROR {
		if len(m.Data) >= 4 {
			if e := -int32(binary.NativeEndian.Uint32(m.Data)); e != 0 {
				return nil, fmt.Errorf("sock_diag of socket:[%d] (in another network namespace?): %w", ino, syscall.Errno(e))
			}
		}
		return nil, fmt.Errorf("sock_diag of socket:[%d]: empty answer", ino)
	}
	var dm abi.UnixDiagMsg
	if len(m.Data) < int(unsafe.Sizeof(dm)) {
		return nil, fmt.Errorf("sock_diag answer: %w", errBadFdinfo)
	}
	copy(ptrace.Bytes(&dm), m.Data)
	if dm.Ino != ino {
		return nil, fmt.Errorf("sock_diag answered for socket:[%d], asked %d: %w", dm.Ino, ino, errBadFdinfo)
	}
	info := &unixInfo{typ: int(dm.Type), state: int(dm.State), shutdown: -1}
	for a := m.Data[unsafe.Sizeof(dm):]; len(a) >= 4; {
		l := int(binary.NativeEndian.Uint16(a))
		typ := binary.NativeEndian.Uint16(a[2:])
		if l < 4 || l > len(a) {
			return nil, fmt.Errorf("sock_diag attribute length %d: %w", l, errBadFdinfo)
		}
		v := a[4:l]
		switch typ {
		case abi.UNIX_DIAG_NAME:
			info.named = true
		case abi.UNIX_DIAG_PEER:
			if len(v) >= 4 {
				info.peer = binary.NativeEndian.Uint32(v)
			}
		case abi.UNIX_DIAG_RQLEN:
			if len(v) >= 4 {
				info.rqueue = binary.NativeEndian.Uint32(v)
			}
		case abi.UNIX_DIAG_SHUTDOWN:
			if len(v) >= 1 {
				info.shutdown = int(v[0])
			}
		}
		a = a[min(len(a), (l+3)&^3):]
	}
	return info, nil
}

// sockHome is where a recreated socket pair's helper fds live: ends[0]
// is the socket with the lower inode at dump.
type sockHome struct {
	pid, nsPid int
	ends       [2]int
}

func openUnixPair(c *restoreCtx, fd *image.FD) (int, error) {
	s := fd.Sock
	key, idx := s.Ino, 0
	if s.Peer < s.Ino {
		key, idx = s.Peer, 1
	}
	home, ok := c.socks[key]
	if !ok {
		ends, err := createSocketPair(c, s.Type)
		if err != nil {
			return -1, err
		}
		home = sockHome{pid: c.r.Pid, nsPid: c.r.NsPid, ends: ends}
		c.socks[key] = home
	}
	if s.State != nil {
		if err := restoreSockState(home, idx, s); err != nil {
			return -1, err
		}
	}
	// In another process of the tree than the pair's: sockets cannot be
	// opened through /proc, so the stub takes a copy with pidfd_getfd.
	got, err := takeIn(c, home.pid, home.nsPid, home.ends[idx])
	if err != nil {
		return -1, fmt.Errorf("socket end: %w", err)
	}
	return got, nil
}

// createSocketPair makes a socket pair of type typ in the stub and moves
// both ends above every image fd.
func createSocketPair(c *restoreCtx, typ int) ([2]int, error) {
	var ends [2]int
	arr, err := c.r.Put(ptrace.ArgOff, make([]byte, 8))
	if err != nil {
		return ends, err
	}
	if _, err := c.r.Syscall(unix.SYS_SOCKETPAIR, unix.AF_UNIX, uint64(typ|unix.SOCK_CLOEXEC), 0, arr); err != nil {
		return ends, fmt.Errorf("socketpair type %d: %w", typ, err)
	}
	var raw [8]byte
	if err := c.r.Get(ptrace.ArgOff, raw[:]); err != nil {
		return ends, err
	}
	for i := range ends {
		tmp := uint64(binary.NativeEndian.Uint32(raw[4*i:]))
		high, err := c.r.Syscall(unix.SYS_FCNTL, tmp, unix.F_DUPFD_CLOEXEC, uint64(c.tempBase))
		if err != nil {
			return ends, fmt.Errorf("move socket end: %w", err)
		}
		if err := c.r.Close(int(tmp)); err != nil {
			return ends, err
		}
		ends[i] = int(high)
	}
	return ends, nil
}

// restoreSockState gives end idx of the pair at home its options and
// queued messages, working on pidfd_getfd copies taken by rtcr (the same
// sockets: nothing is injected).
func restoreSockState(home sockHome, idx int, s *image.UnixSock) error {
	st := s.State
	pidfd, err := unix.PidfdOpen(home.pid, 0)
	if err != nil {
		return fmt.Errorf("pidfd_open %d: %w", home.pid, err)
	}
	defer unix.Close(pidfd)
	self, err := unix.PidfdGetfd(pidfd, home.ends[idx], 0)
	if err != nil {
		return fmt.Errorf("pidfd_getfd socket end: %w", err)
	}
	defer unix.Close(self)
	other, err := unix.PidfdGetfd(pidfd, home.ends[1-idx], 0)
	if err != nil {
		return fmt.Errorf("pidfd_getfd peer end: %w", err)
	}
	defer unix.Close(other)
	if err := setBuf(self, unix.SO_SNDBUF, unix.SO_SNDBUFFORCE, st.SndBuf); err != nil {
		return err
	}
	if err := setBuf(self, unix.SO_RCVBUF, unix.SO_RCVBUFFORCE, st.RcvBuf); err != nil {
		return err
	}
	if err := refill(other, st.Queue, s.Type); err != nil {
		return err
	}
	for _, o := range []struct {
		opt int
		us  int64
	}{{unix.SO_SNDTIMEO, st.SndTimeo}, {unix.SO_RCVTIMEO, st.RcvTimeo}} {
		tv := unix.NsecToTimeval(o.us * 1000)
		if err := unix.SetsockoptTimeval(self, unix.SOL_SOCKET, o.opt, &tv); err != nil {
			return fmt.Errorf("setsockopt timeout %d: %w", o.opt, err)
		}
	}
	if st.PassCred {
		if err := unix.SetsockoptInt(self, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
			return fmt.Errorf("setsockopt SO_PASSCRED: %w", err)
		}
	}
	if st.PeekOff != -1 {
		if err := unix.SetsockoptInt(self, unix.SOL_SOCKET, unix.SO_PEEK_OFF, st.PeekOff); err != nil {
			return fmt.Errorf("setsockopt SO_PEEK_OFF %d: %w", st.PeekOff, err)
		}
	}
	return nil
}

// setBuf sets buffer option opt (getsockopt value want, which is twice
// what setsockopt takes) on socket fd when it differs, forcing it past
// the sysctl limit with force when rtcr may.
func setBuf(fd, opt, force, want int) error {
	cur, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, opt)
	if err != nil || cur == want {
		return err
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, want/2); err == nil {
		return nil
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, want/2); err != nil {
		return fmt.Errorf("setsockopt %d to %d: %w", opt, want/2, err)
	}
	return nil
}

// refill sends the saved messages q through socket other to its peer,
// one send per message (SOCK_STREAM: until every byte is sent). The
// sender's buffer is raised for the time of the sends and put back.
func refill(other int, q [][]byte, typ int) error {
	if len(q) == 0 {
		return nil
	}
	total := 0
	for _, m := range q {
		total += len(m)
	}
	snd, err := unix.GetsockoptInt(other, unix.SOL_SOCKET, unix.SO_SNDBUF)
	if err != nil {
		return fmt.Errorf("getsockopt SO_SNDBUF: %w", err)
	}
	if err := unix.SetsockoptInt(other, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, total+snd); err == nil {
		defer unix.SetsockoptInt(other, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, snd/2)
	}
	for i, m := range q {
		for len(m) > 0 {
			n, err := unix.SendmsgN(other, m, nil, nil, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL)
			if err != nil {
				return fmt.Errorf("refill unix socket: message %d of %d (%d bytes): %w", i+1, len(q), len(m), err)
			}
			if typ != unix.SOCK_STREAM && n != len(m) {
				return fmt.Errorf("refill unix socket: message %d sent %d of %d bytes", i+1, n, len(m))
			}
			m = m[n:]
		}
	}
	return nil
}

// sockIno returns the inode of a "socket:[N]" fd link, 0 for others.
func sockIno(link string) uint64 {
	if !strings.HasPrefix(link, "socket:[") {
		return 0
	}
	ino, _ := strconv.ParseUint(strings.Trim(link, "socket:[]"), 10, 64)
	return ino
}
