package files

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/rtcr/rtcr/internal/abi"
	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// dumpUnix dumps an AF_UNIX socket for unixPairKind (pair) or unixKind:
// it claims the socket when it is of that kind and refuses what neither
// restores.
func dumpUnix(s *fdState, pair bool) (image.FD, bool, error) {
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
	switch info.typ {
	case unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_SEQPACKET:
	default:
		return image.FD{}, false, fmt.Errorf("unix socket of type %d: %w", info.typ, ErrUnsupported)
	}
	if info.shutdown < 0 || info.shutdown > 3 {
		return image.FD{}, false, fmt.Errorf("unix socket shutdown state %d (-1: not reported by sock_diag): %w", info.shutdown, ErrUnsupported)
	}
	sock := &image.UnixSock{Ino: ino, Type: info.typ}
	var peer *unixInfo
	isPair := false
	switch {
	case pair && (info.state == abi.TCP_LISTEN || info.peer == 0):
		return image.FD{}, false, nil // not a pair: unixKind's
	case info.state == abi.TCP_LISTEN:
		sock.Listen, sock.Backlog = true, int(info.wqueue)
		if sock.Pending, err = dumpPending(s, info); err != nil {
			return image.FD{}, false, err
		}
	case info.peer == 0 && info.state == abi.TCP_ESTABLISHED && info.typ != unix.SOCK_DGRAM:
		// Its peer is a connection waiting in a listener's accept queue
		// (it has no inode), or it was closed: the kernel then shut
		// this socket down both ways (and a pending connection whose
		// listener was closed is the same).
		peer, err = listenerOf(s, info)
		switch {
		case errors.Is(err, errNoListener) && info.shutdown == 3:
			sock.PeerClosed = true
		case err != nil:
			return image.FD{}, false, err
		default:
			sock.PendingOn = uint64(peer.ino)
		}
	case info.peer != 0:
		if peer, err = unixDiag(info.peer); err != nil {
			return image.FD{}, false, fmt.Errorf("peer socket:[%d]: %w", info.peer, err)
		}
		inTree := s.tree.sockets[uint64(info.peer)]
		// A datagram socket connected to its own name is no pair.
		isPair = inTree && uint64(peer.peer) == ino && uint64(info.peer) != ino
		switch {
		case isPair:
			sock.Peer = uint64(info.peer)
		case info.typ == unix.SOCK_DGRAM && peer.named:
			if inTree {
				sock.Peer = uint64(info.peer)
			}
		case !inTree:
			return image.FD{}, false, fmt.Errorf("unix socket connected to socket:[%d], not held in the dumped tree: %w", info.peer, ErrUnsupported)
		default:
			return image.FD{}, false, fmt.Errorf("unix socket connected to socket:[%d], which is not connected back to it: %w", info.peer, ErrUnsupported)
		}
	}
	if isPair != pair {
		return image.FD{}, false, nil
	}
	if sock.Addr, err = dumpAddr(s.pid, info); err != nil {
		return image.FD{}, false, err
	}
	if peer != nil {
		if sock.PeerAddr, err = dumpAddr(s.pid, peer); err != nil {
			return image.FD{}, false, fmt.Errorf("peer socket:[%d]: %w", info.peer, err)
		}
	}
	if pair && sock.Addr != nil && sock.PeerAddr != nil && info.typ != unix.SOCK_DGRAM {
		if sock.Accepted, err = acceptedEnd(info, peer); err != nil {
			return image.FD{}, false, err
		}
	}
	kind := image.FDUnix
	if pair {
		kind = image.FDUnixPair
	}
	fd := image.FD{Flags: s.info.Flags, Desc: s.link + " " + sockDesc(sock), Sock: sock}
	if s.tree.socksSaved[ino] {
		return fd, true, nil
	}
	// The sender a refill gives the messages: the other end of a pair,
	// else a new unnamed socket.
	sender := ""
	if pair && sock.PeerAddr != nil {
		sender = goName(sock.PeerAddr.Name)
	}
	if !pair && info.rqueue > 0 && !info.named && !sock.Listen && !sock.PeerClosed {
		return image.FD{}, false, fmt.Errorf("%s with messages queued to it, which it has no name to be sent to again: %w", kind, ErrUnsupported)
	}
	if sock.Listen {
		info.rqueue = 0 // the pending connections, 0 (checked above)
	}
	// An unconnected stream or seqpacket socket has no queue, and a peek
	// on it fails (EINVAL).
	unconnected := info.typ != unix.SOCK_DGRAM && info.peer == 0 && info.rqueue == 0
	st, err := dumpSockState(dup, info.typ, sender, !sock.Listen && !unconnected, info.shutdown&1 != 0)
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
	st.Shutdown = info.shutdown
	sock.State = st
	return fd, true, nil
}

// dumpPending records the clients of the connections waiting in the
// accept queue of listener info, in order: each must be held in the tree
// and must not have sent anything yet (the bytes would be queued to the
// connection, which only an accept could read).
func dumpPending(s *fdState, info *unixInfo) ([]uint64, error) {
	if int(info.rqueue) != len(info.icons) {
		return nil, fmt.Errorf("listening unix socket: sock_diag tells %d connections waiting to be accepted and lists %d", info.rqueue, len(info.icons))
	}
	var out []uint64
	for _, c := range info.icons {
		if !s.tree.sockets[uint64(c)] {
			return nil, fmt.Errorf("listening unix socket with %d connections waiting to be accepted, from socket:[%d] not held in the dumped tree: %w", len(info.icons), c, ErrUnsupported)
		}
		ci, err := unixDiag(c)
		if err != nil {
			return nil, fmt.Errorf("waiting connection from socket:[%d]: %w", c, err)
		}
		if ci.wmem != 0 {
			return nil, fmt.Errorf("listening unix socket with %d connections waiting to be accepted: socket:[%d] sent %d bytes (memory) on one, which only an accept could read: %w", len(info.icons), c, ci.wmem, ErrUnsupported)
		}
		out = append(out, uint64(c))
	}
	return out, nil
}

// listenerOf returns the listener in whose accept queue the connection
// of client info waits, which must be held in the tree.
func listenerOf(s *fdState, info *unixInfo) (*unixInfo, error) {
	all, err := unixSockets()
	if err != nil {
		return nil, err
	}
	for _, l := range all {
		if l.state == abi.TCP_LISTEN && slices.Contains(l.icons, info.ino) {
			if !s.tree.sockets[uint64(l.ino)] {
				return nil, fmt.Errorf("unix socket waiting to be accepted by socket:[%d], not held in the dumped tree: %w", l.ino, ErrUnsupported)
			}
			return l, nil
		}
	}
	return nil, errNoListener
}

// errNoListener is listenerOf's error for a socket no listener shows.
var errNoListener = fmt.Errorf("unix socket connected, waiting to be accepted by a listener sock_diag does not show: %w", ErrUnsupported)

// acceptedEnd returns which of the connected named sockets a and b has
// its name from a listener that still listens (0: neither).
func acceptedEnd(a, b *unixInfo) (uint64, error) {
	all, err := unixSockets()
	if err != nil {
		return 0, err
	}
	for _, l := range all {
		if l.state != abi.TCP_LISTEN {
			continue
		}
		for _, e := range []*unixInfo{a, b} {
			if bytes.Equal(l.name, e.name) && l.vfsIno == e.vfsIno && l.vfsDev == e.vfsDev {
				return uint64(e.ino), nil
			}
		}
	}
	return 0, nil
}

// sockDesc describes socket s for inspect: its type, name, listening
// state and peer's name.
func sockDesc(s *image.UnixSock) string {
	d := map[int]string{unix.SOCK_STREAM: "stream", unix.SOCK_DGRAM: "dgram", unix.SOCK_SEQPACKET: "seqpacket"}[s.Type]
	if s.Addr != nil {
		d += fmt.Sprintf(" %q", goName(s.Addr.Name))
	}
	if s.Listen {
		d += fmt.Sprintf(" listening (backlog %d)", s.Backlog)
	}
	if s.PeerAddr != nil {
		d += fmt.Sprintf(" to %q", goName(s.PeerAddr.Name))
	}
	return d
}

// goName is a socket name as x/sys/unix spells it: an abstract name with
// "@" for its leading NUL.
// x/sys/unix ends every name at its first NUL (after the leading one).
func goName(name []byte) string {
	if len(name) > 0 && name[0] == 0 {
		name = append([]byte{'@'}, name[1:]...)
	}
	if i := bytes.IndexByte(name, 0); i >= 0 {
		name = name[:i]
	}
	return string(name)
}
