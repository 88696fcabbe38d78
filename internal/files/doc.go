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
//	                                                 restore that it opened the file it checked
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
//	                                                 still names it (ino), else refuses "watched fd
//	                                                 N no longer names the watched file"
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
//	flags O_ACCMODE           memfd                  memfd_create opens O_RDWR; another mode is
//	                                                 reopened through /proc/self/fd (TestMemfd)
//	mnt_id, ino               memfd, inotify         identity: the restored object is a new one
//	inotify: wd, mask         inotify                inotify_add_watch, wds in order, gaps skipped
//	                                                 with dummy watches; restore fails if a wd
//	                                                 comes out other (TestInotify); wd above 65536
//	                                                 refused
//	inotify: ino, sdev,       inotify                identity of the watched file: opened by
//	  fhandle-*, f_handle                            handle at dump, recorded by path (checked to
//	                                                 name ino); none found refused "has no path"
//	inotify: ignored_mask     inotify                non-zero refused (TestDumpWatchRefused)
//	pos                       unix socket pair       always 0; non-zero refused as above
//	mnt_id, ino               unix socket pair       identity: ino is the socket's inode; sock_diag
//	                                                 gives its peer's, which must be held in the
//	                                                 tree and name it back, else refused "not held
//	                                                 in the dumped tree" (TestUnixSocketRefused);
//	                                                 the pair restored is new
//	                                                 (TestUnixPairRoundTrip)
//	scm_fds                   unix socket pair       fds in flight to the socket: non-zero refused
//	                                                 "carry N file descriptors (SCM_RIGHTS"
//	                                                 (TestUnixSocketRefused)
//	lock (flock, POSIX, OFD,  all                    refused: "file lock (fdinfo lock: 1: FLOCK …)"
//	      lease)                                     (TestFDStateRefused)
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
//	                                                 "bytes of queued inotify events" (TestInoMemRefused)
//	contents, size, mode,     memfd                  read through rtcr's own open of /proc/PID/fd/N
//	F_GET_SEALS, name                                (holes skipped, at most 16 MiB of data, kept in
//	                                                 the manifest), written back through
//	                                                 /proc/STUB/fd/N, seals last (TestMemfd); a memfd
//	                                                 opened twice (not a dup) refused "memfd shared
//	                                                 with fd N of P" (TestInoMemRefused),
//	                                                 hugetlb memfds refused (no test)
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
//	type, state, name,        unix socket pair       sock_diag (unix_diag, asked by inode in rtcr's
//	peer, shutdown, rqlen                            network namespace): type restored by
//	                                                 socketpair; a name (bound or autobound)
//	                                                 refused "with a name (bound)"
//	                                                 (TestUnixSocketRefused), listening, unconnected
//	                                                 or shut down refused; rqlen checked against
//	                                                 the bytes read
//	queued messages           unix socket pair       MSG_PEEK on a copy, walked with SO_PEEK_OFF
//	                                                 (put back after), one message per datagram or
//	                                                 seqpacket, sent again through the other end
//	                                                 (TestUnixPairRoundTrip); control data refused
//	SO_PASSCRED, SO_SNDBUF,   unix socket pair       getsockopt on a copy, setsockopt on a copy of
//	SO_RCVBUF, SO_SNDTIMEO,                          the new socket (SO_*BUFFORCE past the sysctl
//	SO_RCVTIMEO, SO_PEEK_OFF                         limit); SO_PASSCRED tested (TestUnixPairRoundTrip)
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
// perf event, fanotify, userfaultfd, pidfd, landlock …), a block or
// character device by its numbers, a namespace file by its type
// (TestUnsupportedKindsNamed).
//
// Not visible in fdinfo and not restored: whether a FIFO is also open
// outside the tree (its bytes are saved and put back; restore refuses a
// FIFO that holds bytes already), and dnotify (F_NOTIFY) watches.
package files
