// Package files holds the fd table: each kind of open file rtcr can
// checkpoint lives in one file of this package with its dump, check and
// restore side by side, and is listed once in the kinds table (table_linux.go).
// Restore puts every fd back at its original number.
//
// # Nothing is lost silently
//
// Every line of /proc/PID/fdinfo/N of an fd of a supported kind is either
// restored or makes the dump refuse with an error naming the pid, the fd
// and the field (wrapping ErrUnsupported); a line the kind does not list
// is refused too ("fdinfo field %q (…) is not saved"), so a field a later
// kernel adds cannot slip through. Inherited fds 0–2 are exempt: restore
// hands the process the restorer's own fds, whose flags are shared with
// whoever else holds them (a shell's terminal) and are left alone.
//
//	field                     kind                   outcome (proof)
//	pos                       regular file, dir      restored by lseek (TestRoundTrip)
//	pos                       device, pipe, eventfd, always 0 (lseek on these devices resets it);
//	                          epoll                  non-zero refused: "fdinfo pos N on a device",
//	                                                 "… on a file without a position"
//	flags O_ACCMODE, O_CLOEXEC all                   restored by open / dup3 / F_SETFD (TestRoundTrip)
//	flags O_DIRECTORY, O_PATH,
//	      O_LARGEFILE         file, dir              restored by open (TestRoundTrip)
//	flags O_NONBLOCK          all                    F_SETFL (TestFDStatusFlags: pipe end, epoll)
//	flags O_APPEND            file                   open and F_SETFL (TestFDStatusFlags)
//	flags O_ASYNC             all                    F_SETFL, never open, which records the flag
//	                                                 without arming SIGIO (TestFDStatusFlags)
//	flags O_DIRECT, O_NOATIME all                    open and F_SETFL, as O_APPEND (no test)
//	flags O_DSYNC, O_SYNC     file                   open (no test)
//	mnt_id, ino               file, dir, device      identity, not state: the path is reopened; dump
//	                                                 checks the path still names the open inode,
//	                                                 restore that it opened the file it checked; a
//	                                                 file that grew or changed is reopened at pos
//	                                                 (TestGrownFileReopened); gone, of another type
//	                                                 or shrunk below pos refused before any process
//	                                                 exists (TestChangedFileRefused)
//	mnt_id, ino               pipe, eventfd, epoll   identity: the restored object is a new one
//	pos                       FIFO                   always 0, as for pipes
//	mnt_id, ino               FIFO                   identity: the path is reopened as for files
//	                                                 (a FIFO only where one was recorded, and the
//	                                                 reverse: TestFifoReplacedRefused); its buffered
//	                                                 bytes are saved once per FIFO and put back once
//	                                                 (TestFifoRoundTrip)
//	eventfd-count             eventfd                eventfd2 + write (TestFDStatusFlags)
//	eventfd-semaphore         eventfd                EFD_SEMAPHORE (TestFDStatusFlags)
//	eventfd-id                eventfd                identity (an id number), a new one is given
//	pos                       timerfd, signalfd      always 0; non-zero refused (as for eventfd)
//	mnt_id, ino               timerfd, signalfd      identity: the restored object is a new one
//	clockid                   timerfd                timerfd_create (TestTimerfdSignalfd)
//	settime flags             timerfd                TFD_TIMER_ABSTIME: timerfd_settime with the expiry
//	                                                 on the process's clock (TestTimerfdSignalfd);
//	                                                 TFD_TIMER_CANCEL_ON_SET refused: "timerfd settime
//	                                                 flags 03" (TestTimerfdCancelOnSetRefused)
//	it_value                  timerfd                time left, read after timerfd_gettime on a copy
//	                                                 of the fd (see timerfdKind); timerfd_settime, for
//	                                                 an absolute timer as an expiry (TestTimerfdSignalfd)
//	it_interval               timerfd                timerfd_settime (TestTimerfdSignalfd)
//	ticks                     timerfd                TFD_IOC_SET_TICKS, checked before restore starts
//	                                                 (TestTimerfdSignalfd)
//	sigmask                   signalfd               signalfd4 (TestTimerfdSignalfd)
//	tfd: fd, events, data     epoll                  epoll_ctl (TestFDStatusFlags)
//	tfd: pos, ino, sdev       epoll                  identity of the watched file: dump checks fd
//	                                                 still names it (kcmp KCMP_EPOLL_TFD); if not
//	                                                 (closed, reused) the fd of the tree holding the
//	                                                 file is found (kcmp on the fds with that ino),
//	                                                 its open file restored as shared, and the watch
//	                                                 added on a copy of it once every process has its
//	                                                 fds, under fd N if free (TestEpollHeldWatch);
//	                                                 none refused "no fd of the tree holds"
//	pos                       memfd                  restored by lseek (TestMemfd)
//	pos                       deleted file           restored by lseek (TestDeletedFileRoundTrip)
//	flags O_ACCMODE           deleted file           the file is created O_RDWR; every fd is a reopen
//	                                                 of it through /proc with its access mode
//	                                                 (TestDeletedFileRoundTrip: fd 4 read-only)
//	flags O_SYNC, O_DSYNC     deleted file           the reopen (no test); other status flags F_SETFL
//	mnt_id, ino               deleted file           identity: fds on one inode at dump become one
//	                                                 new file, across processes too
//	                                                 (TestDeletedFileRoundTrip/delfork)
//	pos                       inotify                always 0; non-zero refused as above
//	flags O_ACCMODE           memfd                  the memfd is created O_RDWR as a helper; every
//	                                                 fd is a reopen of it through /proc with its
//	                                                 access mode (TestMemfd: fd 5 read-only)
//	mnt_id, ino               memfd                  identity: fds (and mappings, see homes_linux.go)
//	                                                 on one memfd become one new memfd, across
//	                                                 processes too (TestMemfd/reopened,
//	                                                 TestMemfdAndDeletedMappings)
//	mnt_id, ino               inotify                identity: the restored object is a new one
//	inotify: wd, mask         inotify                inotify_add_watch, wds in order, gaps skipped
//	                                                 with dummy watches; restore fails if a wd
//	                                                 comes out other (TestInotify); wd above 65536
//	                                                 refused
//	inotify: ino, sdev,       inotify                identity of the watched file: opened by
//	  fhandle-*, f_handle                            handle at dump, recorded by path (checked to
//	                                                 name ino); none found refused "has no path"
//	inotify: ignored_mask     inotify                non-zero refused (TestDumpWatchRefused)
//	pos                       unix socket (pair and  always 0; non-zero refused as above
//	                          other)
//	mnt_id, ino               unix socket            identity: ino is the socket's inode; sock_diag
//	                                                 gives its peer's: a stream or seqpacket peer must
//	                                                 be held in the tree and name it back, else refused
//	                                                 "not held in the dumped tree"
//	                                                 (TestUnixSocketRefused); a datagram socket's peer
//	                                                 may be any named socket (reconnected by name); the
//	                                                 socket restored is new (TestUnixPairRoundTrip,
//	                                                 TestUnixNamedRoundTrip)
//	scm_fds                   unix socket            fds in flight to the socket: non-zero refused
//	                                                 "carry N file descriptors (SCM_RIGHTS"
//	                                                 (TestUnixSocketRefused)
//	tty-index                 pty master             the pair's number: the pair is recreated, its
//	                                                 number may differ (TestPtyPair); the slaves
//	                                                 (/dev/pts/N on /dev/pts) of a master held in the
//	                                                 tree are restored with it, a slave whose master
//	                                                 is outside refused at fds above 2 "whose master
//	                                                 is outside the tree" (TestPtyRefused), inherited
//	                                                 at fds 0-2; a master whose slave the tree does
//	                                                 not hold must poll POLLHUP (slave closed), else
//	                                                 refused "open outside the tree or was never
//	                                                 opened" (TestPtyRefused)
//	mnt_id, ino, pos          pty master, slave      identity; pos always 0
//	lock: FLOCK, POSIX,       file, dir              type and range saved (lock_linux.go); taken again
//	      OFDLCK                                     once every fd of the tree is in place: flock and
//	                                                 F_OFD_SETLK on the restored open file description,
//	                                                 F_SETLK in the process (TestFileLocks: each still
//	                                                 excludes another process, POSIX owned by the
//	                                                 restored pid); one held outside the tree now is
//	                                                 refused before any process exists, from
//	                                                 /proc/locks (TestFileLockHeldRefused)
//	lock: LEASE ACTIVE        file                   read or write saved; taken again with F_SETLEASE on
//	                                                 the restored open file description with the file
//	                                                 locks, before the fd owners (a lease makes the
//	                                                 process the file's owner); EAGAIN (the file open
//	                                                 elsewhere) fails the restore naming the file
//	                                                 (TestLeaseRoundTrip: F_GETLEASE, in a child
//	                                                 sharing it too, conflicting opens break it)
//	lock: LEASE BREAKING      all                    refused: "lease being broken (fdinfo lock: …)"
//	                                                 (TestLeaseBreakingRefused)
//	lock: DELEG, ACCESS;      all                    refused: "file lock (fdinfo lock: 1: DELEG …)"
//	      any lock on another
//	      kind
//	pos                       external pipe, socket  always 0; non-zero refused as above
//	mnt_id, ino               external pipe, socket  identity: the ID pipe:[ino] / socket:[ino]; every fd
//	                                                 with one ID is one object on restore: the
//	                                                 --inherit-fd one, the restorer's fd 0–2, or a new
//	                                                 one (TestExternalInheritPipe, TestExternalStdout)
//	flags O_NONBLOCK …        external               F_SETFL, also on an --inherit-fd fd (TestExternal-
//	                                                 InheritPipe); the restorer's own fds 0–2 given by
//	                                                 default are left alone, as for inherited fds
//	scm_fds                   external socket        non-zero: not claimed; the socket pair kind refuses
//	any other line            all                    refused: "fdinfo field "x" (…) is not saved"
//
// Not in fdinfo, read with fcntl on a copy of the fd that rtcr takes with
// pidfd_getfd (the same open file, so nothing is injected into the target):
//
//	F_GETOWN_EX               all but O_PATH         F_SETOWN_EX, injected in the stub once every
//	                                                 process and thread exists (TestFDStatusFlags:
//	                                                 SIGIO arrives); an owner outside the tree is
//	                                                 refused: "owner (F_GETOWN_EX) is process N,
//	                                                 outside the dumped tree" (TestFDStateRefused)
//	F_GETSIG                  all but O_PATH         F_SETSIG, with the owner (TestFDStatusFlags)
//	FIONREAD                  inotify                queued events are not saved: non-zero refused
//	fdinfo "fanotify"         fanotify               group flags, event flags, marks (inode: by
//	                                                 file handle to a path; mount: mount point,
//	                                                 statx mount id checked; filesystem: a mount
//	                                                 point), masks, ignored masks, mark flags;
//	                                                 content and pre-content classes refused
//	                                                 (TestFanotifyRoundTrip)
//	FIONREAD                  fanotify               queued events are not saved: non-zero refused
//	                                                 (TestFanotifyQueuedRefused)
//	                                                 "bytes of queued inotify events" (TestInoMemRefused)
//	contents, size, mode,     memfd                  read through rtcr's own open of /proc/PID/fd/N
//	F_GET_SEALS, name                                (holes skipped, at most 16 MiB of data, kept in
//	                                                 the manifest), written back through
//	                                                 /proc/STUB/fd/N, seals last, once per memfd
//	                                                 (TestMemfd); hugetlb memfds refused (no test)
//	open file description     all but inherited      kcmp(KCMP_FILE) at dump against one fd of each
//	  (dup, fork, SCM_RIGHTS)                        description on the same file; fds that shared
//	                                                 one record its id (Shared) and are restored as
//	                                                 one: the first created as usual, the others a
//	                                                 dup or, in another process, pidfd_getfd from the
//	                                                 first's stub (TestSharedOpenFile, TestMemfd)
//	contents, size, mode      deleted file           read through rtcr's own open of /proc/PID/fd/N
//	                                                 once per file (holes skipped, at most 16 MiB
//	                                                 of data, else refused: TestDeletedFileRefused),
//	                                                 written on a pidfd_getfd copy of the new file
//	                                                 (TestDeletedFileRoundTrip); still linked
//	                                                 elsewhere refused "has N other links"
//	                                                 (TestDeletedFileRefused)
//	type, state, peer,        unix socket            sock_diag (unix_diag, asked by inode in rtcr's
//	shutdown                                         network namespace): type restored by socket or
//	                                                 socketpair; the shutdown state of each socket
//	                                                 saved and applied with shutdown(2) once every fd
//	                                                 of the tree is in place and every refill done
//	                                                 (ShutdownSockets); a stream or seqpacket socket
//	                                                 whose peer was closed (no peer, shut down both
//	                                                 ways) is one end of a new pair, refilled through
//	                                                 the other, which is then closed
//	                                                 (TestUnixShutdownRoundTrip; on a socket shut down
//	                                                 for reading an empty message queued last cannot
//	                                                 be told from the end of file and is lost); a
//	                                                 datagram socket connected to its own name is
//	                                                 connected to it again (TestUnixUnconnected-
//	                                                 RoundTrip)
//	name (UNIX_DIAG_NAME,     unix socket            path names (relative ones resolved against the
//	  UNIX_DIAG_VFS)                                 working directory) must still name the socket's
//	                                                 file (VFS inode), else refused "is not its socket
//	                                                 file"; the file's mode and owner recorded; bound
//	                                                 again in the stub (see bindIn) with that mode and
//	                                                 owner, a stale socket file removed only if no
//	                                                 socket is bound to it, anything else there refused
//	                                                 (TestUnixStaleFileChecked); abstract names bound as
//	                                                 they are; the accepted end of a connection gets its
//	                                                 name by being accepted from its listener (or a
//	                                                 temporary one); names checked from inside
//	                                                 (TestUnixNamedRoundTrip)
//	listening, backlog        unix socket            state TCP_LISTEN, UNIX_DIAG_RQLEN's wqueue:
//	  (UNIX_DIAG_RQLEN)                              listen(2) with it (TestUnixNamedRoundTrip takes
//	                                                 exactly backlog + 1 connections)
//	accept queue (RQLEN       unix listener          connections not accepted yet: their clients, in
//	  rqueue, ICONS)                                 order (ICONS), connected again in that order once
//	                                                 every fd of the tree is in place (ConnectPending:
//	                                                 a connection accepted from the same listener is
//	                                                 restored before, from an empty queue; a client
//	                                                 finds its listener in a sock_diag dump)
//	                                                 (TestUnixPendingRoundTrip); a client outside the
//	                                                 tree, or one that sent bytes on it (MEMINFO
//	                                                 wmem_alloc, which only an accept could read),
//	                                                 refused "with N connections waiting to be
//	                                                 accepted" (TestUnixNamedRefused)
//	rqlen                     unix socket            checked against the bytes read
//	queued messages           unix socket            MSG_PEEK on a copy, walked with SO_PEEK_OFF
//	                                                 (put back after), one message per datagram or
//	                                                 seqpacket, sent again through the other end of a
//	                                                 pair, or, to a named socket, from a new unnamed
//	                                                 socket (TestUnixPairRoundTrip,
//	                                                 TestUnixNamedRoundTrip); control data refused; a
//	                                                 sender address other than the one the refill gives
//	                                                 refused "was sent by" (TestUnixNamedRefused)
//	SO_PASSCRED, SO_PASSSEC,  unix socket            getsockopt on a copy, setsockopt on a copy of
//	SO_PASSPIDFD,                                    the new socket, each set either way (an accepted
//	SO_PASSRIGHTS, SO_SNDBUF,                        socket starts with its listener's); SO_*BUFFORCE
//	SO_RCVBUF, SO_SNDTIMEO,                          past the sysctl limit; SO_PASSCRED, SO_PASSSEC,
//	SO_RCVTIMEO, SO_PEEK_OFF                         SO_PASSPIDFD tested (TestUnixPairRoundTrip,
//	                                                 TestUnixNamedRoundTrip); turned off for the time of
//	                                                 a refill or connect, which would autobind a name
//	termios (TCGETS), window  pty pair               read once per pair on a copy of the master
//	size (TIOCGWINSZ), lock                          (termios ioctls on a master act on the slave),
//	(TIOCGPTLCK), packet                             set on the new pair (TestPtyPair: termios and
//	mode (TIOCGPKT)                                  window size); line discipline other than N_TTY
//	                                                 and exclusive mode (TIOCEXCL) refused
//	FIONREAD on the master    pty pair               the bytes the slave side wrote, unread: read on
//	                                                 the copy and at once written back through a new
//	                                                 open of the slave (TIOCGPTPEER) with OPOST off,
//	                                                 so a dump that leaves the tree running loses
//	                                                 nothing (TestPtyPairLeaveRunning); written into
//	                                                 the new pair the same way (TestPtyPair); in
//	                                                 packet mode refused
//	FIONREAD on the slave     pty pair               input written to the master, unread by the
//	                                                 slave side: in non-canonical mode read on a new
//	                                                 open of the slave and at once written back
//	                                                 through the master with input processing, echo
//	                                                 and signals off until the kernel queued it
//	                                                 (TestPtyPairLeaveRunning, TestPtyPair
//	                                                 rawunread); in canonical mode (where FIONREAD
//	                                                 counts complete lines only) read with ICANON
//	                                                 off for the moment, so a partial line shows
//	                                                 too, and written back as lines (TestPtyPair
//	                                                 unread); end-of-file characters (NUL in the
//	                                                 buffer, left out of FIONREAD) saved as NUL and
//	                                                 written back as VEOF (TestScriptRestored); a
//	                                                 partial line, NUL input or VEOF/VEOL/VEOL2/
//	                                                 VERASE/VKILL characters refused once put back
//	                                                 (TestPtyRefused)
//	buffered bytes            external pipe, read    tee on rtcr's open of /proc/PID/fd/N, once per ID;
//	                          end                    written into the new pipe, or into the
//	                                                 --inherit-fd pipe (TestExternalInheritPipe); a
//	                                                 write end's bytes are the outside reader's
//	type, state, name, peer   external socket        sock_diag: an unnamed, connected, not listening
//	                                                 unix socket whose peer is not held in the tree
//	queued messages, options  external socket        as for socket pairs, on a copy (the peer is not
//	                                                 frozen: rqlen not compared); sent again into a new
//	                                                 pair, or, with --inherit-fd, lost with a warning
//	                                                 (TestExternalInheritSocket); timeouts,
//	                                                 SO_PASSCRED and SO_PEEK_OFF also set on an
//	                                                 --inherit-fd socket
//
// TCP and UDP sockets (IPv4, IPv6; inetKind) are read on a pidfd_getfd
// copy with getsockopt, getsockname, getpeername, ioctl and poll, which
// change nothing; an established connection is read in TCP_REPAIR mode
// under the network lock (tcprepair_linux.go, internal/netlock):
//
//	pos                       TCP/UDP socket         always 0; non-zero refused as above
//	mnt_id, ino               TCP/UDP socket         identity: a new socket; fds on one socket share it
//	SO_DOMAIN, SO_TYPE,       TCP/UDP socket         socket(); another protocol of AF_INET/AF_INET6
//	SO_PROTOCOL                                      (raw, SCTP, MPTCP …) refused "only TCP and UDP"
//	SIOCGSKNS                 TCP/UDP socket         another network namespace than rtcr's refused
//	                                                 "in network namespace net:[N]" (TestInetRefused)
//	getsockname, getpeername  TCP/UDP socket         bind (SO_REUSEADDR for the time of bind and listen
//	                                                 on TCP), connect (UDP), repair connect (TCP);
//	                                                 link-local IPv6 (a scope) refused
//	TCP_INFO state            TCP socket             ESTABLISHED, LISTEN, CLOSE (never connected: no
//	                                                 segment sent) restored; any other (SYN_SENT,
//	                                                 FIN_WAIT1/2, CLOSE_WAIT, LAST_ACK, CLOSING, a reset
//	                                                 CLOSE …) refused naming it (TestInetRefused: CLOSE_WAIT)
//	TCP_INFO unacked, sacked  listening TCP socket   sacked is the backlog: listen(backlog); unacked,
//	                                                 the accept queue, must be 0. Before the freeze
//	                                                 the dump holds new connections back (a drain
//	                                                 table, internal/netlock), waits up to 5 s until
//	                                                 the program accepted the queued ones and no
//	                                                 handshake is under way (sock_diag idiag_rqueue,
//	                                                 SYN_RECV requests; drain_linux.go), freezes,
//	                                                 and thaws and waits again if one slipped in (3
//	                                                 freezes); a queue that stays is refused "N
//	                                                 connections not accepted yet", naming pid, fd,
//	                                                 address (TestTCPDrain, TestTCPDrainRetry,
//	                                                 TestInetRefused); without nft, refused at once
//	poll POLLERR, POLLRDHUP   TCP/UDP socket         a pending error (SO_ERROR, error queue) or a
//	                                                 shutdown for reading refused (reading SO_ERROR
//	                                                 would clear it)
//	SIOCINQ                   UDP socket             a queued datagram refused "datagrams queued"
//	                                                 (TestInetRefused)
//	TCP_QUEUE_SEQ, queues     established TCP        repair: seqs, send queue (acked part in repair,
//	(SIOCOUTQ, SIOCOUTQNSD,                          unsent part sent after), receive queue
//	SIOCINQ, MSG_PEEK)                               (TestTCPServerRoundTrip: both filled); urgent
//	                                                 data (peek short of SIOCINQ) refused
//	TCP_INFO options, wscale, established TCP        TCP_REPAIR_OPTIONS (SACK, window scales,
//	TCP_MAXSEG, TCP_TIMESTAMP                        timestamps, MSS), TCP_TIMESTAMP; ECN and
//	                                                 microsecond timestamps refused
//	TCP_REPAIR_WINDOW         established TCP        TCP_REPAIR_WINDOW
//	SO_PEEK_OFF               TCP socket             -1 only; set refused
//	options of image.SockOpts TCP/UDP socket         those differing from a new socket's saved and set
//	                                                 (SO_REUSEADDR, SO_REUSEPORT, SO_KEEPALIVE,
//	                                                 SO_BROADCAST, SO_DONTROUTE, SO_OOBINLINE,
//	                                                 SO_PRIORITY, SO_RCVLOWAT, SO_TIMESTAMP[NS],
//	                                                 SO_LINGER, SO_RCVTIMEO, SO_SNDTIMEO, SO_SNDBUF,
//	                                                 SO_RCVBUF (an autotuned odd size comes out one
//	                                                 less), SO_BUF_LOCK (set last: autotuned sizes
//	                                                 stay autotuned), SO_MARK, SO_BINDTODEVICE (the
//	                                                 interface name), SO_NO_CHECK, SO_ZEROCOPY,
//	                                                 SO_MAX_PACING_RATE, TCP_NODELAY, TCP_CORK, TCP_KEEPIDLE,
//	                                                 TCP_KEEPINTVL, TCP_KEEPCNT, TCP_USER_TIMEOUT,
//	                                                 TCP_SYNCNT, TCP_LINGER2, TCP_DEFER_ACCEPT,
//	                                                 TCP_NOTSENT_LOWAT, TCP_THIN_LINEAR_TIMEOUTS,
//	                                                 TCP_FASTOPEN, TCP_CONGESTION, UDP_CORK,
//	                                                 UDP_SEGMENT, UDP_GRO, IP_TOS, IP_TTL,
//	                                                 IP_MTU_DISCOVER, IP_RECVERR, IP_PKTINFO,
//	                                                 IP_RECVTOS, IP_RECVTTL, IP_FREEBIND,
//	                                                 IP_BIND_ADDRESS_NO_PORT, IP_MULTICAST_TTL/LOOP,
//	                                                 IPV6_V6ONLY, IPV6_UNICAST_HOPS, IPV6_TCLASS,
//	                                                 IPV6_MTU_DISCOVER, IPV6_RECVERR, IPV6_RECVPKTINFO,
//	                                                 IPV6_MULTICAST_HOPS/LOOP); TestTCPServerRoundTrip
//	                                                 checks NODELAY, KEEPALIVE, KEEPIDLE/INTVL/CNT,
//	                                                 SNDBUF, BUF_LOCK, RCVTIMEO, LINGER, REUSEADDR, V6ONLY from
//	                                                 inside, TestUDPRoundTrip RCVBUF, TestSockOptsRoundTrip
//	                                                 MARK, BINDTODEVICE, NO_CHECK, PRIORITY 7,
//	                                                 ZEROCOPY, MAX_PACING_RATE, DONTROUTE, OOBINLINE,
//	                                                 RCVLOWAT. SO_MARK and SO_PRIORITY above 6 need
//	                                                 CAP_NET_ADMIN of the image owner (rtcr sets them)
//	SO_GET_FILTER,            TCP/UDP socket         set (differing from a new socket's) refused
//	SO_BUSY_POLL, TCP_ULP,                           naming the option (TestSockOptsRefused)
//	TCP_WINDOW_CLAMP (unconnected), IP(V6)_TRANSPARENT
//
// Not read, so not restored: multicast group memberships
// (IP_ADD_MEMBERSHIP), IP_OPTIONS, TCP_MD5SIG keys, TCP_QUICKACK (a
// transient state), an established connection's TCP_WINDOW_CLAMP (its
// windows are restored).
//
// The owner is asked for every fd, not only those with O_ASYNC: it costs
// two fcntl calls in rtcr, and an owner set before O_ASYNC (or for SIGURG,
// once sockets are supported) must not be lost. An owner outside the tree
// is refused rather than kept: by the time of the restore its id can name
// another process, which would get the signals. An owner that has exited
// reads as id 0 and is restored as such (signals go nowhere, as before).
// In an `rtcr run` tree the ids are translated into the tree's namespace.
// The kernel records the credentials of the caller of F_SETOWN_EX for its
// permission check: restore sets the owner with the restorer's
// credentials (root, usually), before the process gets its own, so a
// signal the original's credentials would not have allowed may be allowed
// after a restore.
//
// An fd no kind claims is refused naming its kind (refuse_linux.go): a
// socket by family, type and protocol (SO_DOMAIN, SO_TYPE, SO_PROTOCOL on
// a copy of the fd; a netlink socket with its NETLINK_* protocol), an
// anonymous-inode file by what it is (io_uring, bpf map/program/link,
// perf event, userfaultfd, pidfd, landlock …), a block or
// character device by its numbers (TestUnsupportedKindsNamed).
//
// An fd on /dev/tty (cttyKind, ctty_linux.go) is saved when the terminal
// it reaches (TIOCGDEV on a pidfd_getfd copy) is the process's controlling
// terminal; restore opens /dev/tty in the stub, which has its controlling
// terminal again by then, and checks it reaches it (TestDevTTYRoundTrip).
// One reaching another terminal is refused (TestDevTTYLostRefused).
//
// A namespace file (nsKind, nsfs_linux.go: /proc/PID/ns/TYPE opened) is
// saved by its type and inode when it is the namespace the process is in
// and rtcr is in at the dump; restore opens /proc/STUB/ns/TYPE, checks the
// inode and gives the stub that fd (TestNamespaceFD: the same namespace,
// close-on-exec kept, setns takes it). Any other namespace is refused
// "not the namespace the process is in" (TestNamespaceFDRefused), and a
// restore in other namespaces than the saved one is refused before any
// process exists.
//
// Not visible in fdinfo and not restored: whether a FIFO is also open
// outside the tree (its bytes are saved and put back; restore refuses a
// FIFO that holds bytes already), and dnotify (F_NOTIFY) watches. Not
// restored: the shutdown state of an external socket (without
// --inherit-fd its peer is closed, which ends both directions anyway; it
// is not applied to an inherited socket), and bytes the outside end of an
// external object sends after the dump read it (lost with the old object).
package files
