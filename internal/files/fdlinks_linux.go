package files

import "github.com/rtcr/rtcr/internal/procfs"

// fdLink is one open fd of a process and the target of its /proc link.
type fdLink struct {
	num  int
	link string
}

// fdLinks returns the fds of process pid and their links, read once for
// the scans NewTree makes of the frozen tree (pipes, shared descriptions,
// epoll watches, ptys): each read every fd's link again, four readlinks
// per fd. An fd whose link cannot be read (closed meanwhile) is left
// out; Dump, which lists the fds again, reports it.
func (t *Tree) fdLinks(pid int) ([]fdLink, error) {
	if l, ok := t.links[pid]; ok {
		return l, nil
	}
	nums, err := procfs.ListFDs(pid)
	if err != nil {
		return nil, err
	}
	l := make([]fdLink, 0, len(nums))
	for _, n := range nums {
		if link, err := procfs.ReadFDLink(pid, n); err == nil {
			l = append(l, fdLink{n, link})
		}
	}
	if t.links == nil {
		t.links = map[int][]fdLink{}
	}
	t.links[pid] = l
	return l, nil
}
