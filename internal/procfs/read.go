package procfs

import (
	"bytes"
	"io"
	"os"
	"sort"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// A dump reads /proc files by the thousand (a 32-process tree: about
// 1,500 opens). os.Open costs four more system calls a file than the
// open, read and close a /proc file needs (non-blocking mode set and
// cleared, an epoll registration that fails for it), each a few
// microseconds in a VM. These helpers make the plain calls.

// openFile opens path read-only with a plain openat, retrying on EINTR.
// Errors are *os.PathError, as os.Open's.
func openFile(path string, flags int) (int, error) {
	for {
		fd, err := unix.Open(path, flags|unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return -1, &os.PathError{Op: "open", Path: path, Err: err}
		}
		return fd, nil
	}
}

// readFile returns the whole content of /proc file path (os.ReadFile
// without the poller's calls).
func readFile(path string) ([]byte, error) {
	fd, err := openFile(path, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	buf := getLineBuffer()
	b := buf[:0]
	defer func() { putLineBuffer(buf) }()
	for {
		if len(b) == cap(b) {
			b = append(b, 0)[:len(b)]
		}
		n, err := unix.Read(fd, b[len(b):cap(b)])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "read", Path: path, Err: err}
		}
		if n == 0 {
			break
		}
		b = b[:len(b)+n]
	}
	return bytes.Clone(b), nil
}

// readFileReader is readFile as an io.Reader, for the line parsers.
func readFileReader(path string) (io.Reader, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return bytes.NewReader(b), nil
}

// readlink returns the target of the symbolic link path (os.Readlink
// without its retries on a growing buffer for the short targets of /proc).
func readlink(path string) (string, error) {
	var buf [512]byte
	for {
		n, err := unix.Readlink(path, buf[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return "", &os.PathError{Op: "readlink", Path: path, Err: err}
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		return os.Readlink(path) // longer than buf: let os grow it
	}
}

// readDirInts returns the sorted numeric entry names of directory dir,
// ignoring entries that are not decimal numbers.
func readDirInts(dir string) ([]int, error) {
	fd, err := openFile(dir, unix.O_DIRECTORY)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	var buf [8192]byte
	var out []int
	names := make([]string, 0, 64)
	for {
		n, err := unix.ReadDirent(fd, buf[:])
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &os.PathError{Op: "readdirent", Path: dir, Err: err}
		}
		if n <= 0 {
			break
		}
		names = names[:0]
		_, _, names = syscall.ParseDirent(buf[:n], -1, names)
		for _, name := range names {
			v, err := strconv.Atoi(name)
			if err != nil || v < 0 {
				continue
			}
			out = append(out, v)
		}
	}
	sort.Ints(out)
	if out == nil {
		out = []int{}
	}
	return out, nil
}
