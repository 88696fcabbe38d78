package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr"
	"golang.org/x/sys/unix"
)

// givenFDs are the fds rtcr was started with: those open without
// close-on-exec when it starts (an fd passed across exec cannot have it;
// the Go runtime opens its own files, such as cgroup limits, with it).
var givenFDs map[int]bool

// notCloexec returns the open fds without close-on-exec.
func notCloexec() map[int]bool {
	fds := map[int]bool{}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return fds
	}
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if fl, err := unix.FcntlInt(uintptr(n), unix.F_GETFD, 0); err == nil && fl&unix.FD_CLOEXEC == 0 {
			fds[n] = true
		}
	}
	return fds
}

// checkGiven refuses an --inherit-fd whose fd was not given to rtcr: it
// would pass on one of rtcr's own files.
func checkGiven(ins []rtcr.InheritFD) error {
	for _, in := range ins {
		if !givenFDs[in.Fd] {
			return usagef("--inherit-fd %d:%s: rtcr's fd %d is not open (start rtcr with it open, e.g. %d<&N in a shell)", in.Fd, in.ID, in.Fd, in.Fd)
		}
	}
	return nil
}

// inheritFlag collects --inherit-fd values: N:ID, or CRIU's fd[N]:ID.
type inheritFlag []rtcr.InheritFD

func (f *inheritFlag) String() string {
	var s []string
	for _, in := range *f {
		s = append(s, fmt.Sprintf("%d:%s", in.Fd, in.ID))
	}
	return strings.Join(s, ",")
}

// Set parses one value. The ID is checked against the image by the
// restore; here only its form: not empty, no spaces or control bytes.
func (f *inheritFlag) Set(v string) error {
	in, err := parseInheritFD(v)
	if err != nil {
		return err
	}
	*f = append(*f, in)
	return nil
}

// parseInheritFD parses "N:ID" or "fd[N]:ID".
func parseInheritFD(v string) (rtcr.InheritFD, error) {
	num, id, ok := strings.Cut(v, ":")
	if !ok {
		return rtcr.InheritFD{}, fmt.Errorf("want FD:ID (e.g. 5:pipe:[1234]), got %q", v)
	}
	if inner, ok := strings.CutPrefix(num, "fd["); ok {
		num, ok = strings.CutSuffix(inner, "]")
		if !ok {
			return rtcr.InheritFD{}, fmt.Errorf("want fd[N]:ID, got %q", v)
		}
	}
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || num != strconv.Itoa(n) {
		return rtcr.InheritFD{}, fmt.Errorf("fd %q in %q is not a number of 0 or more", num, v)
	}
	if id == "" {
		return rtcr.InheritFD{}, fmt.Errorf("no ID after the fd in %q (see rtcr inspect for the IDs)", v)
	}
	for _, r := range id {
		if r <= ' ' || r == 0x7f {
			return rtcr.InheritFD{}, fmt.Errorf("ID %q contains a space or control character", id)
		}
	}
	return rtcr.InheritFD{Fd: n, ID: id}, nil
}
