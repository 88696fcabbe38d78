package files

import (
	"fmt"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// unixKind covers the AF_UNIX sockets that are not one end of a pair held
// in the tree (unixPairKind): unconnected sockets, bound to a path or an
// abstract name or not, listening sockets with their backlog (none with a
// connection waiting to be accepted), and datagram sockets connected to a
// named socket, held in the tree or not. Restore creates the socket in
// the first process that has it (an injected socket and, for a name, bind;
// see bindIn), which keeps it as a helper fd; rtcr, on a pidfd_getfd copy,
// sets its options, sends its queued datagrams again from a new unnamed
// socket, listens with the backlog and connects it by name to its peer
// (an in-tree peer once that is created).
var unixKind = kind{
	dump:   func(s *fdState) (image.FD, bool, error) { return dumpUnix(s, false) },
	check:  func(fd *image.FD) error { return nil },
	open:   openUnix,
	fields: []string{"scm_fds"},
}

// unixRestorer is what a Restorer knows of the unix sockets it made.
type unixRestorer struct {
	// made holds the socket files this restore bound (a later bind may
	// remove them: see clearStale).
	made map[FileID]bool
	// bound holds the socket files sockets of rtcr's network namespace
	// were bound to when the first stale file was found (nil: not asked
	// yet), with the socket's inode.
	bound map[FileID]uint32
	// listeners holds the listening sockets made, by addrKey.
	listeners map[string]sockHome
	// singles holds the unixKind sockets made, by inode at dump; created
	// every socket made (either kind), by inode at dump.
	singles map[uint64]sockHome
	created map[uint64]bool
	// waiting holds, by the inode at dump of the socket they connect to,
	// the datagram sockets made before it.
	waiting map[uint64][]waiter
	// pending holds the accept queues of the listeners made, by inode
	// at dump.
	pending map[uint64]*pendingQueue
	// shutdowns are the sockets to shut down at the end (see
	// ShutdownSockets).
	shutdowns []shutdown
}

// shutdown is a socket to shut down: end idx of home, how as the
// socket's shutdown state (1 receive, 2 send, 3 both), ino its inode at
// dump.
type shutdown struct {
	home sockHome
	idx  int
	how  int
	ino  uint64
}

// shutdownLater records socket s (end idx of home) for ShutdownSockets
// if it was shut down.
func (u *unixRestorer) shutdownLater(home sockHome, idx int, s *image.UnixSock) {
	if s.State.Shutdown != 0 {
		u.shutdowns = append(u.shutdowns, shutdown{home: home, idx: idx, how: s.State.Shutdown, ino: s.Ino})
	}
}

// ShutdownSockets shuts the unix sockets that were shut down at dump down
// again, once every fd of the tree is in place and every waiting
// connection made (ConnectPending) and before Sweep: a socket whose
// sending side is shut down could not send the messages refilled into its
// peer, nor one whose receiving side is shut down receive them, so the
// shutdowns wait for every refill. shutdown(2) of a stream or seqpacket
// socket also shuts its peer's other side (its receive side when this one
// no longer sends), as at dump, where the kernel did the same; a datagram
// socket's state is its own.
func (rs *Restorer) ShutdownSockets() error {
	if rs.unix == nil {
		return nil
	}
	for _, sd := range rs.unix.shutdowns {
		self, err := getfd(sd.home.pid, sd.home.ends[sd.idx])
		if err != nil {
			return fmt.Errorf("shut socket:[%d] down: %w", sd.ino, err)
		}
		// sk_shutdown bits are RCV_SHUTDOWN 1, SEND_SHUTDOWN 2;
		// shutdown(2) takes SHUT_RD 0, SHUT_WR 1, SHUT_RDWR 2.
		err = unix.Shutdown(self, sd.how-1)
		unix.Close(self)
		if err != nil {
			return fmt.Errorf("shut socket:[%d] down (state %d): %w", sd.ino, sd.how, err)
		}
	}
	return nil
}

// waiter is a datagram socket to connect to addr once it exists.
type waiter struct {
	home sockHome
	addr *image.UnixAddr
}

// unixRestore returns the unix socket state of c's Restorer.
func (c *restoreCtx) unixRestore() *unixRestorer {
	if c.unix == nil {
		c.unix = &unixRestorer{made: map[FileID]bool{}, listeners: map[string]sockHome{}, singles: map[uint64]sockHome{},
			created: map[uint64]bool{}, waiting: map[uint64][]waiter{}, pending: map[uint64]*pendingQueue{}}
	}
	return c.unix
}

// socketMade records that the socket with inode ino at dump exists now and
// connects the datagram sockets waiting for it.
func (u *unixRestorer) socketMade(ino uint64) error {
	u.created[ino] = true
	for _, w := range u.waiting[ino] {
		if err := connectHome(w.home, w.addr, nil); err != nil {
			return err
		}
	}
	delete(u.waiting, ino)
	return nil
}

// connectHome connects the socket at home to the socket named a.
func connectHome(home sockHome, a *image.UnixAddr, as *image.Creds) error {
	self, err := getfd(home.pid, home.ends[0])
	if err != nil {
		return err
	}
	defer unix.Close(self)
	return connectTo(self, a, as)
}

func openUnix(c *restoreCtx, fd *image.FD) (int, error) {
	s := fd.Sock
	u := c.unixRestore()
	home, ok := u.singles[s.Ino]
	if !ok {
		var err error
		if home, err = createSingle(c, s); err != nil {
			return -1, err
		}
	} else if s.State != nil {
		return -1, fmt.Errorf("socket:[%d] state on an fd after its first", s.Ino)
	}
	got, err := takeIn(c, home.pid, home.nsPid, home.ends[0])
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	return got, nil
}

// createSingle makes the unixKind socket s in the stub of c: socket, bind,
// options, queued datagrams, listen, connect.
//
// A socket whose peer was closed (PeerClosed) is one end of a new socket
// pair, refilled through the other end, which is then closed: the kernel
// shuts the socket down as it did at dump, and a read returns the bytes
// queued, then end of file.
func createSingle(c *restoreCtx, s *image.UnixSock) (sockHome, error) {
	u := c.unixRestore()
	var sock int
	var err error
	peerEnd := -1
	if s.PeerClosed {
		var ends [2]int
		if ends, err = createSocketPair(c, s.Type); err != nil {
			return sockHome{}, err
		}
		sock, peerEnd = ends[0], ends[1]
	} else if sock, err = socketIn(c, s.Type); err != nil {
		return sockHome{}, err
	}
	home := sockHome{pid: c.r.Pid, nsPid: c.r.NsPid, ends: [2]int{sock, -1}}
	if s.Addr != nil {
		if err := bindIn(c, sock, s.Addr); err != nil {
			return sockHome{}, err
		}
	}
	self, err := getfd(home.pid, sock)
	if err != nil {
		return sockHome{}, err
	}
	defer unix.Close(self)
	if st := s.State; st != nil {
		if err := setBufs(self, st); err != nil {
			return sockHome{}, err
		}
		if peerEnd >= 0 {
			err = refillThrough(home.pid, peerEnd, s)
		} else {
			err = refillFromNew(s)
		}
		if err != nil {
			return sockHome{}, err
		}
		if err := setOptions(self, st); err != nil {
			return sockHome{}, err
		}
	}
	if peerEnd >= 0 {
		if err := c.r.Close(peerEnd); err != nil {
			return sockHome{}, fmt.Errorf("close the new peer of socket:[%d]: %w", s.Ino, err)
		}
	}
	if s.Listen {
		if err := unix.Listen(self, s.Backlog); err != nil {
			return sockHome{}, fmt.Errorf("listen with backlog %d: %w", s.Backlog, err)
		}
		u.listeners[addrKey(s.Addr)] = home
	}
	u.singles[s.Ino] = home
	if s.State != nil {
		u.shutdownLater(home, 0, s)
	}
	if s.Listen && len(s.Pending) > 0 {
		// Connected at the end (ConnectPending): a named pair accepted
		// from this listener meanwhile must find only its own
		// connection in the queue.
		u.pending[s.Ino] = &pendingQueue{clients: s.Pending, addr: s.Addr}
	}
	if s.PeerAddr != nil && s.PendingOn == 0 {
		switch {
		case s.Peer == 0:
			// Outside the tree: connected to with the process's rights.
			if err := connectTo(self, s.PeerAddr, c.as); err != nil {
				return sockHome{}, err
			}
		case u.created[s.Peer]:
			if err := connectTo(self, s.PeerAddr, nil); err != nil {
				return sockHome{}, err
			}
		default:
			u.waiting[s.Peer] = append(u.waiting[s.Peer], waiter{home, s.PeerAddr})
		}
	}
	return home, u.socketMade(s.Ino)
}

// pendingQueue is the accept queue of a listener: its clients in order,
// the next to connect, and the listener's name.
type pendingQueue struct {
	clients []uint64
	next    int
	addr    *image.UnixAddr
}

// ConnectPending connects, in their order, the clients of the
// connections that waited in the accept queue of each restored listener.
// It runs once every process's fds are in place and before Sweep (the
// clients' helper fds are used): earlier, a socket pair made by accepting
// from the same listener (createNamedPair) would have accepted a waiting
// connection instead of its own (zdtm sockets00: the program then read
// from the wrong socket for ever).
func (rs *Restorer) ConnectPending() error {
	if rs.unix == nil {
		return nil
	}
	u := rs.unix
	for lino, q := range u.pending {
		for ; q.next < len(q.clients); q.next++ {
			h, ok := u.singles[q.clients[q.next]]
			if !ok {
				return fmt.Errorf("waiting connection from socket:[%d] to listener socket:[%d]: the client was not restored", q.clients[q.next], lino)
			}
			if err := connectHome(h, q.addr, nil); err != nil {
				return fmt.Errorf("waiting connection from socket:[%d] to listener socket:[%d]: %w", q.clients[q.next], lino, err)
			}
		}
	}
	return nil
}

// refillThrough sends the bytes queued to s again through fd peerEnd of
// process pid, its new peer, and closes peerEnd there.
func refillThrough(pid, peerEnd int, s *image.UnixSock) error {
	other, err := getfd(pid, peerEnd)
	if err != nil {
		return fmt.Errorf("peer end: %w", err)
	}
	err = refillQuiet(other, s.State.Queue, s.Type)
	unix.Close(other)
	return err
}

// refillFromNew sends the datagrams queued to the named socket s again,
// from a new unnamed socket of rtcr connected to it (their sender was
// unnamed: peekQueue).
func refillFromNew(s *image.UnixSock) error {
	if len(s.State.Queue) == 0 {
		return nil
	}
	if s.Addr == nil {
		return fmt.Errorf("messages queued to an unnamed socket: %w", ErrUnsupported)
	}
	tmp, err := unix.Socket(unix.AF_UNIX, s.Type|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket for the refill: %w", err)
	}
	defer unix.Close(tmp)
	if err := connectTo(tmp, s.Addr, nil); err != nil {
		return fmt.Errorf("refill: %w", err)
	}
	return refill(tmp, s.State.Queue, s.Type)
}

// socketIn makes an AF_UNIX socket of type typ in the stub of c, above
// every image fd.
func socketIn(c *restoreCtx, typ int) (int, error) {
	tmp, err := c.r.Syscall(unix.SYS_SOCKET, unix.AF_UNIX, uint64(typ|unix.SOCK_CLOEXEC), 0)
	if err != nil {
		return -1, fmt.Errorf("socket type %d: %w", typ, err)
	}
	return moveHigh(c, int(tmp))
}

// createNamedPair makes a connected pair with names (ends[0]: the socket
// with the lower inode at dump). A datagram pair is a socketpair whose
// named ends are then bound. A stream or seqpacket pair is made as the
// kernel made it: one named end (the one the dump found accepted from a
// listener, else the lower) is the accepted end, whose name is its listener's: it is accepted from the restored
// listener of that name if there is one, else from a temporary listener
// bound to it and closed after (a path's file stays, as it did after the
// original listener closed); the other end binds its own name, if it has
// one, and connects.
func createNamedPair(c *restoreCtx, s *image.UnixSock) ([2]int, error) {
	addrs := [2]*image.UnixAddr{s.Addr, s.PeerAddr}
	if s.Peer < s.Ino {
		addrs = [2]*image.UnixAddr{s.PeerAddr, s.Addr}
	}
	if s.Type == unix.SOCK_DGRAM {
		ends, err := createSocketPair(c, s.Type)
		if err != nil {
			return ends, err
		}
		for i, a := range addrs {
			if a != nil {
				if err := bindIn(c, ends[i], a); err != nil {
					return ends, err
				}
			}
		}
		return ends, nil
	}
	var ends [2]int
	srv := 0
	if addrs[0] == nil || s.Accepted == max(s.Ino, s.Peer) {
		srv = 1
	}
	cli := 1 - srv
	client, err := socketIn(c, s.Type)
	if err != nil {
		return ends, err
	}
	if addrs[cli] != nil {
		if err := bindIn(c, client, addrs[cli]); err != nil {
			return ends, err
		}
	}
	lfd, err := listenerFor(c, s.Type, addrs[srv])
	if err != nil {
		return ends, err
	}
	if err := connectHome(sockHome{pid: c.r.Pid, ends: [2]int{client, -1}}, addrs[srv], nil); err != nil {
		_ = c.r.Close(lfd)
		return ends, err
	}
	acc, err := c.r.Syscall(unix.SYS_ACCEPT4, uint64(lfd), 0, 0, unix.SOCK_CLOEXEC)
	if cerr := c.r.Close(lfd); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		return ends, fmt.Errorf("accept from the listener of %q: %w", goName(addrs[srv].Name), err)
	}
	if ends[srv], err = moveHigh(c, int(acc)); err != nil {
		return ends, err
	}
	ends[cli] = client
	return ends, nil
}

// listenerFor returns a fd of the stub of c on a listening socket named
// a: the restored one, else a new one bound to a.
func listenerFor(c *restoreCtx, typ int, a *image.UnixAddr) (int, error) {
	if h, ok := c.unixRestore().listeners[addrKey(a)]; ok {
		return takeIn(c, h.pid, h.nsPid, h.ends[0])
	}
	lfd, err := socketIn(c, typ)
	if err != nil {
		return -1, err
	}
	if err := bindIn(c, lfd, a); err != nil {
		_ = c.r.Close(lfd)
		return -1, err
	}
	if _, err := c.r.Syscall(unix.SYS_LISTEN, uint64(lfd), 1); err != nil {
		_ = c.r.Close(lfd)
		return -1, fmt.Errorf("listen on %q: %w", goName(a.Name), err)
	}
	return lfd, nil
}
