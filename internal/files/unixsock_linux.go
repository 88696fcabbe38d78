package files

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// unixPairKind covers connected AF_UNIX sockets whose peer is held in
// the tree too and is connected back to them: from socketpair(2)
// (possibly inherited across fork), or from connect(2) and accept(2) on a
// named listener (the accepted end has the listener's name). sock_diag
// tells the socket's type, state, name, peer, shutdown state and queue
// length; the messages queued to it are read by rtcr on a pidfd_getfd
// copy with MSG_PEEK, walking them with SO_PEEK_OFF (the process's own
// peek offset is put back). Restore creates the pair once, in the first
// process that has either end, keeps both ends as helper fds (as for
// pipes), and gives every fd a copy of its end; the queued messages are
// sent again through the other end, one sendmsg per message. A pair with
// names is made as the kernel made it (see createNamedPair).
var unixPairKind = kind{
	dump:  func(s *fdState) (image.FD, bool, error) { return dumpUnix(s, true) },
	check: func(fd *image.FD) error { return nil },
	open:  openUnixPair,
	// scm_fds: the fds in flight in the messages queued to the socket;
	// only 0 is accepted (dumpUnix).
	fields: []string{"scm_fds"},
}

// dumpSockState reads the options and the queued messages of socket fd.
// Every queued message must come from sender (see peekQueue); a listener
// (peek false) has none. rcvShut says the socket's receive side is shut
// down: an empty read then ends the queue.
func dumpSockState(fd, typ int, sender string, peek, rcvShut bool) (*image.UnixSockState, error) {
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
	for _, o := range []struct {
		opt int
		to  *bool
		set bool
	}{{unix.SO_PASSSEC, &st.PassSec, true}, {unix.SO_PASSPIDFD, &st.PassPidfd, true}, {unix.SO_PASSRIGHTS, &st.NoPassRights, false}} {
		v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, o.opt)
		if errors.Is(err, unix.ENOPROTOOPT) {
			continue // not in this kernel: off
		}
		if err != nil {
			return nil, fmt.Errorf("getsockopt %d: %w", o.opt, err)
		}
		*o.to = (v != 0) == o.set
	}
	if !peek {
		return st, nil
	}
	if st.Queue, err = peekQueue(fd, typ, st.PeekOff, sender, rcvShut); err != nil {
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
//
// A message from another sender than sender (x/sys/unix's spelling of its
// name, "" for unnamed) is refused: the refill could not give it its
// sender's address. A stream's sender is its peer.
//
// On a socket whose receive side is shut down (rcvShut: by shutdown, or
// because its peer was closed) a peek past the last message returns 0
// bytes (end of file), which ends the queue: an empty datagram or
// seqpacket message queued last, before the shutdown, looks the same and
// is not restored (an empty message anywhere else is refused).
func peekQueue(fd, typ, peekOff int, sender string, rcvShut bool) (q [][]byte, err error) {
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
		n, oobn, flags, from, err := unix.Recvmsg(fd, buf, oob, unix.MSG_PEEK|unix.MSG_DONTWAIT)
		if errors.Is(err, unix.EAGAIN) {
			return q, nil
		}
		if err != nil {
			return nil, fmt.Errorf("recvmsg MSG_PEEK: %w", err)
		}
		if oobn > 0 || flags&unix.MSG_CTRUNC != 0 {
			return nil, refuseControl(oob[:oobn])
		}
		if got := fromName(from); typ != unix.SOCK_STREAM && got != sender {
			return nil, fmt.Errorf("queued message %d on a unix socket was sent by %q, restore can only send it again from %q: %w", len(q)+1, got, sender, ErrUnsupported)
		}
		if flags&unix.MSG_TRUNC != 0 {
			return nil, fmt.Errorf("queued message larger than %d bytes: %w", maxSockMsg, ErrUnsupported)
		}
		if n == 0 {
			if typ == unix.SOCK_STREAM || rcvShut {
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

// fromName is the name of the sender recvmsg reports, "" for unnamed.
func fromName(from unix.Sockaddr) string {
	if a, ok := from.(*unix.SockaddrUnix); ok {
		return a.Name
	}
	return ""
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
		var ends [2]int
		var err error
		if s.Addr == nil && s.PeerAddr == nil {
			ends, err = createSocketPair(c, s.Type)
		} else {
			ends, err = createNamedPair(c, s)
		}
		if err != nil {
			return -1, err
		}
		home = sockHome{pid: c.r.Pid, nsPid: c.r.NsPid, ends: ends}
		c.socks[key] = home
		for _, ino := range []uint64{key, max(s.Ino, s.Peer)} {
			if err := c.unixRestore().socketMade(ino); err != nil {
				return -1, err
			}
		}
	}
	if s.State != nil {
		if err := restoreSockState(home, idx, s); err != nil {
			return -1, err
		}
		c.unixRestore().shutdownLater(home, idx, s)
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
	self, err := getfd(home.pid, home.ends[idx])
	if err != nil {
		return fmt.Errorf("socket end: %w", err)
	}
	defer unix.Close(self)
	other, err := getfd(home.pid, home.ends[1-idx])
	if err != nil {
		return fmt.Errorf("peer end: %w", err)
	}
	defer unix.Close(other)
	if err := setBufs(self, s.State); err != nil {
		return err
	}
	if err := refillQuiet(other, s.State.Queue, s.Type); err != nil {
		return err
	}
	return setOptions(self, s.State)
}

// refillQuiet refills through other with its SO_PASSCRED and SO_PASSPIDFD
// off for the time of the sends (see quiet).
func refillQuiet(other int, q [][]byte, typ int) error {
	if len(q) == 0 {
		return nil
	}
	back, err := quiet(other)
	if err != nil {
		return err
	}
	defer back()
	return refill(other, q, typ)
}

// quiet turns off SO_PASSCRED and SO_PASSPIDFD on socket fd (either makes
// a send or a connect autobind a name to an unnamed socket) and returns
// the function that puts them back.
func quiet(fd int) (func(), error) {
	var on []int
	back := func() {
		for _, opt := range on {
			_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 1)
		}
	}
	for _, opt := range []int{unix.SO_PASSCRED, unix.SO_PASSPIDFD} {
		if v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, opt); err == nil && v != 0 {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, 0); err != nil {
				back()
				return nil, fmt.Errorf("setsockopt %d off: %w", opt, err)
			}
			on = append(on, opt)
		}
	}
	return back, nil
}

// setBufs gives socket fd the buffer sizes of st.
func setBufs(fd int, st *image.UnixSockState) error {
	if err := setBuf(fd, unix.SO_SNDBUF, unix.SO_SNDBUFFORCE, st.SndBuf); err != nil {
		return err
	}
	return setBuf(fd, unix.SO_RCVBUF, unix.SO_RCVBUFFORCE, st.RcvBuf)
}

// setOptions gives socket fd the options of st other than its buffer
// sizes: timeouts, SO_PASSCRED, SO_PASSSEC, SO_PASSPIDFD, SO_PASSRIGHTS
// and, last (after any refill), the peek offset.
func setOptions(self int, st *image.UnixSockState) error {
	for _, o := range []struct {
		opt int
		us  int64
	}{{unix.SO_SNDTIMEO, st.SndTimeo}, {unix.SO_RCVTIMEO, st.RcvTimeo}} {
		tv := unix.NsecToTimeval(o.us * 1000)
		if err := unix.SetsockoptTimeval(self, unix.SOL_SOCKET, o.opt, &tv); err != nil {
			return fmt.Errorf("setsockopt timeout %d: %w", o.opt, err)
		}
	}
	// Each is set either way: a socket accepted from a listener has the
	// listener's. The default value is not set where the kernel does not
	// know the option.
	for _, o := range []struct {
		name       string
		opt        int
		on, defOff bool
	}{
		{"SO_PASSCRED", unix.SO_PASSCRED, st.PassCred, true},
		{"SO_PASSSEC", unix.SO_PASSSEC, st.PassSec, true},
		{"SO_PASSPIDFD", unix.SO_PASSPIDFD, st.PassPidfd, true},
		{"SO_PASSRIGHTS", unix.SO_PASSRIGHTS, !st.NoPassRights, false},
	} {
		val := 0
		if o.on {
			val = 1
		}
		err := unix.SetsockoptInt(self, unix.SOL_SOCKET, o.opt, val)
		if err != nil && !(errors.Is(err, unix.ENOPROTOOPT) && o.on != o.defOff) {
			return fmt.Errorf("setsockopt %s %d: %w", o.name, val, err)
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
