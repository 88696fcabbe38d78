package files

import (
	"fmt"

	"github.com/rtcr/rtcr/internal/image"
	"github.com/rtcr/rtcr/internal/procfs"
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
// fork, SCM_RIGHTS), the id of that description (from 1). Each fd is
// compared with kcmp(KCMP_FILE) against one fd of every description seen
// so far on the same file.
func (t *Tree) findShared(pids []int) error {
	t.shared = map[fdRef]int{}
	reps := map[objKey][]fdRef{} // one fd per description, by file
	ids := map[fdRef]int{}       // every fd's description
	members := map[int]int{}
	next := 1
	for _, pid := range pids {
		nums, err := procfs.ListFDs(pid)
		if err != nil {
			return err
		}
		for _, n := range nums {
			link, err := procfs.ReadFDLink(pid, n)
			if err != nil {
				continue // closed meanwhile: Dump reports it
			}
			var st unix.Stat_t
			if err := unix.Stat(fmt.Sprintf("/proc/%d/fd/%d", pid, n), &st); err != nil {
				continue
			}
			key := objKey{dev: st.Dev, ino: st.Ino, link: link}
			me := fdRef{pid, n}
			id := 0
			for _, o := range reps[key] {
				same, err := kcmpFiles(o, me)
				if err != nil {
					return err
				}
				if same {
					id = ids[o]
					break
				}
			}
			if id == 0 {
				id = next
				next++
				reps[key] = append(reps[key], me)
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

// kcmpFiles reports whether fds a and b name one open file description.
func kcmpFiles(a, b fdRef) (bool, error) {
	r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(a.pid), uintptr(b.pid), kcmpFile, uintptr(a.num), uintptr(b.num), 0)
	if errno != 0 {
		return false, fmt.Errorf("kcmp(KCMP_FILE) fd %d of %d with fd %d of %d: %w", a.num, a.pid, b.num, b.pid, errno)
	}
	return r == 0, nil
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
