package procfs

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// FDInfo is the contents of /proc/PID/fdinfo/FD.
type FDInfo struct {
	// Pos is the file position.
	Pos int64
	// Flags are the open flags (O_RDWR, O_CLOEXEC ...), octal in the file.
	Flags int
	// MntID is the id of the mount the file lives on.
	MntID int
	// Ino is the inode number.
	Ino uint64
	// Extra holds every other "key: value" line, keyed by the text before
	// the first colon, with the value trimmed of surrounding white space,
	// e.g. "eventfd-count" -> "5". Lines of the inotify and fanotify
	// records ("inotify wd:1 ino:...") are keyed by their first word
	// ("inotify", "fanotify") and the value is the rest of the line. A key
	// that occurs several times (epoll "tfd", "inotify", "fanotify",
	// "lock" ...) keeps all its values in file order, joined with "\n";
	// use Values to split them.
	Extra map[string]string
}

// Values returns the values of an Extra key in file order, or nil if the key
// is absent. For an epoll fd, Values("tfd") returns one string per watched
// fd, e.g. "11 events: 19 data: b  pos:0 ino:16c8 sdev:f".
func (fi *FDInfo) Values(key string) []string {
	v, ok := fi.Extra[key]
	if !ok {
		return nil
	}
	return strings.Split(v, "\n")
}

// ParseFDInfo parses the contents of a /proc/PID/fdinfo/FD file. The pos and
// flags lines are required; mnt_id and ino are optional (0 if absent).
func ParseFDInfo(r io.Reader) (*FDInfo, error) {
	return parseFDInfo(r, "fdinfo")
}

// ReadFDInfo reads and parses /proc/PID/fdinfo/FD.
func ReadFDInfo(pid, fd int) (*FDInfo, error) {
	path := procPath(pid, "fdinfo/"+strconv.Itoa(fd))
	r, err := readFileReader(path)
	if err != nil {
		return nil, err
	}
	return parseFDInfo(r, path)
}

// ListFDs returns the sorted open file descriptors of pid, from the entries
// of /proc/PID/fd. When pid is the caller itself, the list includes the
// descriptor ListFDs used to read the directory.
func ListFDs(pid int) ([]int, error) {
	return readDirInts(procPath(pid, "fd"))
}

// ReadFDLink returns the target of the symbolic link /proc/PID/fd/FD, e.g.
// "/etc/passwd", "pipe:[1234]", "anon_inode:[eventfd]" or
// "/tmp/x (deleted)".
func ReadFDLink(pid, fd int) (string, error) {
	return readlink(procPath(pid, "fd/"+strconv.Itoa(fd)))
}

func parseFDInfo(r io.Reader, name string) (*FDInfo, error) {
	fi := &FDInfo{Extra: map[string]string{}}
	var sawPos, sawFlags bool
	err := scanLines(r, name, func(line string) error {
		key, val, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("no colon in %q", line)
		}
		if w, rest, ok := strings.Cut(line, " "); ok && (w == "inotify" || w == "fanotify") {
			key, val = w, rest
		}
		key, val = strings.TrimSpace(key), strings.TrimSpace(val)
		var err error
		switch key {
		case "pos":
			sawPos = true
			fi.Pos, err = strconv.ParseInt(val, 10, 64)
		case "flags":
			sawFlags = true
			var v int64
			v, err = strconv.ParseInt(val, 8, 64)
			fi.Flags = int(v)
		case "mnt_id":
			fi.MntID, err = strconv.Atoi(val)
		case "ino":
			fi.Ino, err = strconv.ParseUint(val, 10, 64)
		default:
			if old, ok := fi.Extra[key]; ok {
				val = old + "\n" + val
			}
			fi.Extra[key] = val
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if !sawPos || !sawFlags {
		return nil, fmt.Errorf("parse %s: missing pos or flags line", name)
	}
	return fi, nil
}
