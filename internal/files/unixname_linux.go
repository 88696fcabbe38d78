package files

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"unsafe"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/osthread"
	"github.com/rtcr/rtcr/internal/ptrace"
	"golang.org/x/sys/unix"
)

// Names of AF_UNIX sockets: what a dump records of a bound socket's name
// and file, and how restore binds a socket to it in the stub and connects
// to it.

// dumpAddr records the name of the socket sock_diag told of in info, as
// seen by process pid (nil: unnamed). A path name's file must still be
// the socket's (sock_diag's inode): a relative name is resolved against
// pid's working directory, and a file unlinked, replaced, or bound from
// another directory is refused.
func dumpAddr(pid int, info *unixInfo) (*image.UnixAddr, error) {
	if !info.named || len(info.name) == 0 {
		return nil, nil
	}
	a := &image.UnixAddr{Name: info.name}
	if a.Abstract() {
		return a, nil
	}
	name := string(info.name)
	if filepath.IsAbs(name) {
		a.Path = filepath.Clean(name)
	} else {
		cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
		if err != nil {
			return nil, fmt.Errorf("unix socket name %q: working directory: %w", name, err)
		}
		if filepath.Clean(cwd) != cwd || !filepath.IsAbs(cwd) {
			return nil, fmt.Errorf("unix socket name %q relative to working directory %q: %w", name, cwd, ErrUnsupported)
		}
		a.Dir, a.Path = cwd, filepath.Join(cwd, name)
	}
	var st unix.Stat_t
	err := unix.Lstat(fmt.Sprintf("/proc/%d/root%s", pid, a.Path), &st)
	if err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK || st.Ino != info.vfsIno || st.Dev != info.vfsDev {
		return nil, fmt.Errorf("unix socket bound to %q: %s is not its socket file (unlinked or replaced since, or a relative name bound in another directory than the working directory): %w", name, a.Path, ErrUnsupported)
	}
	if st.Mode&^unix.S_IFMT&^0o777 != 0 {
		return nil, fmt.Errorf("unix socket file %s has mode %#o: %w", a.Path, st.Mode&^unix.S_IFMT, ErrUnsupported)
	}
	a.Ino, a.Mode, a.Uid, a.Gid = st.Ino, st.Mode&0o777, st.Uid, st.Gid
	return a, nil
}

// addrKey names a socket address in the restore's maps: the path of a
// path name, the name of an abstract one.
func addrKey(a *image.UnixAddr) string {
	if a.Abstract() {
		return string(a.Name)
	}
	return a.Path
}

// unixSockaddr returns struct sockaddr_un for name and its length.
func unixSockaddr(name []byte) ([]byte, int) {
	var raw unix.RawSockaddrUnix
	raw.Family = unix.AF_UNIX
	for i, b := range name {
		raw.Path[i] = int8(b)
	}
	n := 2 + len(name)
	if len(name) > 0 && name[0] != 0 && len(name) < len(raw.Path) {
		n++ // a path's terminating NUL
	}
	return ptrace.Bytes(&raw)[:unsafe.Sizeof(raw)], n
}

// rawConnect connects socket fd to name (x/sys/unix's Connect ends an
// abstract name at its first NUL).
func rawConnect(fd int, name []byte) error {
	sa, n := unixSockaddr(name)
	_, _, e := unix.Syscall(unix.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa[0])), uintptr(n))
	runtime.KeepAlive(sa)
	if e != 0 {
		return e
	}
	return nil
}

// bindIn binds socket sock of the stub of c to a, with an injected bind:
//
//   - an abstract name is bound as it is;
//   - for a path name, the directory is first checked with the process's
//     credentials (write and search, as for a deleted file) and opened by
//     rtcr without following links; a file at the path is removed only
//     if it is a socket (never followed) that no socket of rtcr's network
//     namespace is bound to, or one this restore made; the stub then
//     binds with the process's working directory at dump as its own (for
//     a relative name), the recorded permission bits as umask and the
//     recorded owner as fs uid and gid (which, unless the image is root's,
//     must be the process's), and the file bound must be the one now at
//     the path, with that owner, else the restore fails.
func bindIn(c *restoreCtx, sock int, a *image.UnixAddr) error {
	if a.Abstract() {
		return injectBind(c, sock, a.Name)
	}
	if c.as != nil && (a.Uid != c.as.Fsuid || (a.Gid != c.as.Fsgid && !slices.Contains(c.as.Groups, a.Gid))) {
		return fmt.Errorf("socket file %s owned by %d:%d, not by the process (%d:%d): %w", a.Path, a.Uid, a.Gid, c.as.Fsuid, c.as.Fsgid, ErrAccess)
	}
	dir, base := filepath.Dir(a.Path), filepath.Base(a.Path)
	what := fmt.Sprintf("directory of socket file %s", a.Path)
	want := []Access{{Path: dir, Flags: unix.O_RDONLY | unix.O_DIRECTORY, Type: unix.S_IFDIR, What: what, Create: true}}
	if a.Dir != "" {
		want = append(want, Access{Path: a.Dir, Flags: unix.O_PATH | unix.O_DIRECTORY, Type: unix.S_IFDIR, What: "working directory of socket " + a.Path})
	}
	ids, err := CheckAccess(c.as, want)
	if err != nil {
		return err
	}
	dirfd, err := openDir(dir, ids[0])
	if err != nil {
		return err
	}
	defer unix.Close(dirfd)
	u := c.unixRestore()
	if err := clearStale(u, dirfd, a.Path, base); err != nil {
		return err
	}
	if a.Dir != "" {
		cwd, err := OpenIn(c.r, a.Dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, ids[1])
		if err != nil {
			return err
		}
		_, err = c.r.Syscall(unix.SYS_FCHDIR, uint64(cwd))
		if cerr := c.r.Close(cwd); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("fchdir to %s: %w", a.Dir, err)
		}
	}
	oldMask, err := c.r.Syscall(unix.SYS_UMASK, uint64(^a.Mode&0o777))
	if err != nil {
		return fmt.Errorf("umask: %w", err)
	}
	oldGid, _ := c.r.Syscall(unix.SYS_SETFSGID, uint64(a.Gid))
	oldUid, _ := c.r.Syscall(unix.SYS_SETFSUID, uint64(a.Uid))
	err = injectBind(c, sock, a.Name)
	_, _ = c.r.Syscall(unix.SYS_SETFSUID, oldUid)
	_, _ = c.r.Syscall(unix.SYS_SETFSGID, oldGid)
	if _, uerr := c.r.Syscall(unix.SYS_UMASK, oldMask); err == nil && uerr != nil {
		err = fmt.Errorf("umask: %w", uerr)
	}
	if err != nil {
		return err
	}
	return checkBound(c, u, dirfd, sock, a, base)
}

// checkBound verifies the file at a's path (in dirfd, as base) is the one
// socket sock of the stub was just bound to, with the recorded owner and
// mode, and records it as made by this restore.
func checkBound(c *restoreCtx, u *unixRestorer, dirfd, sock int, a *image.UnixAddr, base string) error {
	var sst, fst unix.Stat_t
	if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", c.r.Pid, sock), &sst); err != nil {
		return fmt.Errorf("stat the bound socket: %w", err)
	}
	info, err := unixDiag(uint32(sst.Ino))
	if err != nil {
		return err
	}
	if err := unix.Fstatat(dirfd, base, &fst, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("stat the socket file %s: %w", a.Path, err)
	}
	if fst.Ino != info.vfsIno || fst.Dev != info.vfsDev {
		return fmt.Errorf("socket file %s is not the one bound (inode %d, bound %d): %w", a.Path, fst.Ino, info.vfsIno, ErrChanged)
	}
	u.made[FileID{fst.Dev, fst.Ino}] = true
	if fst.Uid != a.Uid || fst.Gid != a.Gid || fst.Mode&0o7777 != a.Mode {
		return fmt.Errorf("socket file %s bound as %d:%d mode %#o, want %d:%d mode %#o", a.Path, fst.Uid, fst.Gid, fst.Mode&0o7777, a.Uid, a.Gid, a.Mode)
	}
	return nil
}

// injectBind binds socket sock of the stub to name.
func injectBind(c *restoreCtx, sock int, name []byte) error {
	sa, n := unixSockaddr(name)
	addr, err := c.r.Put(ptrace.ArgOff, sa)
	if err != nil {
		return err
	}
	if _, err := c.r.Syscall(unix.SYS_BIND, uint64(sock), addr, uint64(n)); err != nil {
		return fmt.Errorf("bind unix socket to %q: %w", goName(name), err)
	}
	return nil
}

// openDir opens directory path for rtcr (O_PATH, no link followed) and
// checks it is the directory id.
func openDir(path string, id FileID) (int, error) {
	how := unix.OpenHow{Flags: unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &how)
	if err != nil {
		return -1, fmt.Errorf("open directory %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil || st.Dev != id.Dev || st.Ino != id.Ino {
		unix.Close(fd)
		return -1, fmt.Errorf("directory %s changed since it was checked: %w", path, ErrChanged)
	}
	return fd, nil
}

// clearStale removes the stale socket file base (path) of directory
// dirfd, if there is one: only a socket (not followed if a link) that no
// socket of rtcr's network namespace is bound to, or one this restore
// made; anything else there refuses the restore.
func clearStale(u *unixRestorer, dirfd int, path, base string) error {
	var st unix.Stat_t
	err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if errors.Is(err, unix.ENOENT) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stat %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
		return fmt.Errorf("%s exists and is not a socket (file type %#o): not removed: %w", path, st.Mode&unix.S_IFMT, ErrChanged)
	}
	if !u.made[FileID{st.Dev, st.Ino}] {
		if u.bound == nil {
			// Asked once per restore: a file bound since is one this
			// restore made.
			all, err := unixSockets()
			if err != nil {
				return err
			}
			u.bound = map[FileID]uint32{}
			for _, s := range all {
				if s.vfsIno != 0 {
					u.bound[FileID{s.vfsDev, s.vfsIno}] = s.ino
				}
			}
		}
		if ino, ok := u.bound[FileID{st.Dev, st.Ino}]; ok {
			return fmt.Errorf("socket file %s is in use by socket:[%d]: not removed: %w", path, ino, ErrChanged)
		}
	}
	if err := unix.Unlinkat(dirfd, base, 0); err != nil {
		return fmt.Errorf("remove the stale socket file %s: %w", path, err)
	}
	return nil
}

// connectTo connects rtcr's copy self of a restored socket to the socket
// named a: an abstract name directly, a path through an O_PATH fd of its
// socket file, opened without following links with credentials as (nil:
// the restorer's; see CheckAccess) after checking they may write to it,
// as connect(2) asks.
//
// SO_PASSCRED and SO_PASSPIDFD are off for the time of the connect, which
// would otherwise give an unnamed socket a name.
func connectTo(self int, a *image.UnixAddr, as *image.Creds) error {
	back, err := quiet(self)
	if err != nil {
		return err
	}
	defer back()
	if a.Abstract() {
		if err := rawConnect(self, a.Name); err != nil {
			return fmt.Errorf("connect to %q: %w", goName(a.Name), err)
		}
		return nil
	}
	pfd, err := openSocketFile(a.Path, as)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if err := rawConnect(self, []byte(fmt.Sprintf("/proc/self/fd/%d", pfd))); err != nil {
		return fmt.Errorf("connect to %s: %w", a.Path, err)
	}
	return nil
}

// openSocketFile opens socket file path O_PATH (no link followed) on a
// thread with credentials as, which must be allowed to write to it.
func openSocketFile(path string, as *image.Creds) (int, error) {
	type result struct {
		fd  int
		err error
	}
	done := make(chan result, 1)
	open := func() {
		if as != nil {
			if err := becomeFS(as); err != nil {
				done <- result{-1, err}
				return
			}
		}
		how := unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS}
		fd, err := unix.Openat2(unix.AT_FDCWD, path, &how)
		if err != nil {
			done <- result{-1, fmt.Errorf("open socket file %s: %w", path, err)}
			return
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			unix.Close(fd)
			done <- result{-1, fmt.Errorf("%s is not a socket (mode %#o): %w", path, st.Mode, ErrChanged)}
			return
		}
		if err := unix.Faccessat(unix.AT_FDCWD, fmt.Sprintf("/proc/self/fd/%d", fd), unix.W_OK, unix.AT_EACCESS); err != nil {
			unix.Close(fd)
			done <- result{-1, fmt.Errorf("socket file %s: %w: %w", path, ErrAccess, err)}
			return
		}
		done <- result{fd, nil}
	}
	if as != nil {
		// Credentials changed for good: the thread ends with the
		// goroutine (see CheckAccess).
		osthread.Go(open)
	} else {
		go open()
	}
	r := <-done
	return r.fd, r.err
}
