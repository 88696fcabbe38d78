package files

import (
	"fmt"
	"slices"

	"github.com/rtcr/rtcr/internal/image"
	"golang.org/x/sys/unix"
)

// kcmpFile is KCMP_FILE of kcmp(2): do two fds name one open file
// description.
const kcmpFile = 0

// fdRef names fd num of process pid.
type fdRef struct{ pid, num int }

// objKey is what fds on one open file description have in common; only
// fds with the same key are compared with kcmp.
type objKey struct {
	dev, ino uint64
	link     string
}

// findShared records in t.shared, for every fd of the processes pids that
// shares its open file description with another fd of the tree (dup,
// fork, SCM_RIGHTS), the id of that description (from 1). Only fds on the
// same file are compared: one fd of every description seen so far on that
// file is kept sorted by the order kcmp(KCMP_FILE) gives open file
// descriptions, and each fd is looked up there by binary search (many
// descriptions on one file are the rule: every eventfd, timerfd … is on
// one anonymous inode, every open of /dev/null on its inode).
func (t *Tree) findShared(pids []int) error {
	t.shared = map[fdRef]int{}
	reps := map[objKey][]fdRef{} // one fd per description, by file, in kcmp order
	ids := map[fdRef]int{}       // every fd's description
	members := map[int]int{}
	next := 1
	for _, pid := range pids {
		fds, err := t.fdLinks(pid)
		if err != nil {
			return err
		}
		for _, fd := range fds {
			n, link := fd.num, fd.link
			var st unix.Stat_t
			if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", pid, n), &st); err != nil {
				continue
			}
			key := objKey{dev: st.Dev, ino: st.Ino, link: link}
			me := fdRef{pid, n}
			sorted := reps[key]
			var cerr error
			i, found := slices.BinarySearchFunc(sorted, me, func(o, me fdRef) int {
				c, err := kcmpFiles(o, me)
				if err != nil && cerr == nil {
					cerr = err
				}
				return c
			})
			if cerr != nil {
				return cerr
			}
			id := 0
			if found {
				id = ids[sorted[i]]
			} else {
				id = next
				next++
				reps[key] = slices.Insert(sorted, i, me)
			}
			ids[me] = id
			members[id]++
		}
	}
	for ref, id := range ids {
		if members[id] > 1 {
			t.shared[ref] = id
		}
	}
	return nil
}

// kcmpCalls counts the kcmp calls made, for the test that finding shared
// descriptions stays O(n log n).
var kcmpCalls int

// kcmpFiles compares the open file descriptions of fds a and b in the
// order kcmp(KCMP_FILE) gives them (the kernel's addresses, obfuscated
// but consistently): -1, 0 (the same description) or 1.
func kcmpFiles(a, b fdRef) (int, error) {
	kcmpCalls++
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(a.pid), uintptr(b.pid), kcmpFile, uintptr(a.num), uintptr(b.num), 0)
	if errno != 0 {
		return 0, fmt.Errorf("kcmp(KCMP_FILE) fd %d of %d with fd %d of %d: %w", a.num, a.pid, b.num, b.pid, errno)
	}
	switch r {
	case 0:
		return 0, nil
	case 1:
		return -1, nil
	case 2:
		return 1, nil
	}
	return 0, fmt.Errorf("kcmp(KCMP_FILE) fd %d of %d with fd %d of %d: no order (%d)", a.num, a.pid, b.num, b.pid, r)
}

// shareHome is the first restored fd of a shared open file description.
type shareHome struct {
	pid   int // rtcr's pid of the stub
	nspid int // its pid in its own pid namespace (the other stubs')
	fd    image.FD
}

// openShared gives the stub of c a new fd on the open file description
// restored first at h: a dup within the process, else pidfd_getfd from
// the process holding it. Its status flags and position are h's already.
func openShared(c *restoreCtx, h shareHome, fd *image.FD) (int, error) {
	if h.fd.Kind != fd.Kind || h.fd.Flags&^unix.O_CLOEXEC != fd.Flags&^unix.O_CLOEXEC {
		return -1, fmt.Errorf("shared open file %d was a %s with flags %#o on fd %d: %w", fd.Shared, h.fd.Kind, h.fd.Flags, h.fd.Num, image.ErrCorrupt)
	}
	got, err := takeIn(c, h.pid, h.nspid, h.fd.Num)
	if err != nil {
		return -1, fmt.Errorf("shared open file %d: %w", fd.Shared, err)
	}
	return got, nil
}
