package attr

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path"
	"strconv"
	"strings"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// Cgroup policy. A process in the same cgroup as rtcr (every hierarchy,
// as /proc/PID/cgroup and /proc/self/cgroup name it) records nothing: it
// comes back in the restorer's cgroups, as before. A hierarchy where it
// was somewhere else records that path, and restore moves the process
// there (writing its pid to cgroup.procs, before its memory is restored,
// so that the memory is charged there) or fails naming the hierarchy and
// the path: a cgroup that does not exist, or a restorer the kernel does
// not let move it, is an error, never a silent stay in the restorer's.
// A cgroup is never created. For an image of another, non-root user the
// cgroup's cgroup.procs must belong to that user (a cgroup delegated to
// them): root's rights do not take the process into a cgroup its owner
// could not enter.

// dumpCgroups returns the lines of /proc/PID/cgroup that differ from
// rtcr's own.
func dumpCgroups(pid int) ([]image.Cgroup, error) {
	theirs, err := readCgroups(strconv.Itoa(pid))
	if err != nil {
		return nil, err
	}
	own, err := readCgroups("self")
	if err != nil {
		return nil, err
	}
	var out []image.Cgroup
	for _, cg := range theirs {
		same := false
		for _, o := range own {
			if o == cg {
				same = true
				break
			}
		}
		if !same {
			out = append(out, cg)
		}
	}
	return out, nil
}

// readCgroups parses /proc/WHO/cgroup.
func readCgroups(who string) ([]image.Cgroup, error) {
	data, err := os.ReadFile("/proc/" + who + "/cgroup")
	if err != nil {
		return nil, fmt.Errorf("cgroups of %s: %w", who, err)
	}
	var out []image.Cgroup
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		id, rest, ok1 := strings.Cut(sc.Text(), ":")
		ctl, p, ok2 := strings.Cut(rest, ":")
		n, err := strconv.Atoi(id)
		if !ok1 || !ok2 || err != nil {
			return nil, fmt.Errorf("cgroups of %s: line %q", who, sc.Text())
		}
		out = append(out, image.Cgroup{ID: n, Controllers: ctl, Path: p})
	}
	return out, nil
}

// RestoreCgroups moves process pid into each cgroup of cgs (see the
// policy above). owner, when not 0, is the uid of the image's owner, who
// must own each cgroup's cgroup.procs.
func RestoreCgroups(pid int, cgs []image.Cgroup, owner uint32) error {
	for _, cg := range cgs {
		dir, err := cgroupDir(cg)
		if err != nil {
			return fmt.Errorf("restore %d into cgroup %d:%s:%s: %w", pid, cg.ID, cg.Controllers, cg.Path, err)
		}
		procs := path.Join(dir, "cgroup.procs")
		if err := moveInto(pid, procs, owner); err != nil {
			return fmt.Errorf("restore %d into cgroup %d:%s:%s (%s): %w", pid, cg.ID, cg.Controllers, cg.Path, procs, err)
		}
	}
	return nil
}

// moveInto writes pid to the cgroup.procs file procs, opened without
// following symbolic links; with owner set, the file must be owner's.
func moveInto(pid int, procs string, owner uint32) error {
	fd, err := unix.Open(procs, unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), procs)
	defer f.Close()
	if owner != 0 {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return err
		}
		if st.Uid != owner {
			return fmt.Errorf("cgroup.procs belongs to uid %d, not to the image's owner %d: %w", st.Uid, owner, unix.EPERM)
		}
	}
	_, err = f.WriteString(strconv.Itoa(pid))
	return err
}

// cgroupDir finds the directory of cg in rtcr's mounts: the cgroup2 mount
// for ID 0, else the cgroup (v1) mount whose options name every
// controller of cg. It must exist: rtcr creates no cgroup.
func cgroupDir(cg image.Cgroup) (string, error) {
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(string(data), "\n") {
		pre, post, ok := strings.Cut(line, " - ")
		if !ok {
			continue
		}
		f, g := strings.Fields(pre), strings.Fields(post)
		if len(f) < 5 || len(g) < 3 {
			continue
		}
		root, mnt, fstype, opts := f[3], unescape(f[4]), g[0], strings.Split(g[2], ",")
		if cg.ID == 0 && fstype != "cgroup2" || cg.ID != 0 && (fstype != "cgroup" || !hasAll(opts, cg.Controllers)) {
			continue
		}
		rel, ok := strings.CutPrefix(cg.Path, root)
		if root != "/" && !ok || root != "/" && rel != "" && rel[0] != '/' {
			continue // a bind mount of another subtree
		}
		if root == "/" {
			rel = cg.Path
		}
		dir := path.Join(mnt, rel)
		var st unix.Stat_t
		if err := unix.Lstat(dir, &st); err != nil {
			return "", fmt.Errorf("the cgroup %s: %w", dir, err)
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return "", fmt.Errorf("%s is not a cgroup directory: %w", dir, unix.ENOTDIR)
		}
		return dir, nil
	}
	return "", errors.New("no mount of this hierarchy in rtcr's mount namespace")
}

// hasAll reports whether opts holds every comma-separated controller (or
// name=NAME) of ctl.
func hasAll(opts []string, ctl string) bool {
	for _, c := range strings.Split(ctl, ",") {
		found := false
		for _, o := range opts {
			if o == c {
				found = true
			}
		}
		if !found {
			return false
		}
	}
	return true
}

// unescape undoes mountinfo's octal escapes (\040 for a space).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
