package files

import (
	"fmt"
	"sort"

	"github.com/rtcr/rtcr/internal/procfs"
	"golang.org/x/sys/unix"
)

// kcmpFilesTable is KCMP_FILES of kcmp(2): do two processes share one fd table.
const kcmpFilesTable = 2

// sharedTables finds the processes of the tree (pids, parents first) that
// share one fd table (clone with CLONE_FILES and no CLONE_THREAD) and
// returns, for each but the first of each table, the first: the table's
// owner, whose fds the dump records for all of them. Restore creates the
// others with CLONE_FILES from their parent, so each must share its
// parent's table; other layouts (a table shared by two processes whose
// parents have other tables, after an unshare) are refused. The processes
// are sorted by kcmp's order of their tables, so only neighbours need
// comparing.
func sharedTables(pids []int) (map[int]int, error) {
	if len(pids) < 2 {
		return nil, nil
	}
	pos := map[int]int{}
	for i, pid := range pids {
		pos[pid] = i
	}
	order := append([]int(nil), pids...)
	var kerr error
	cmp := func(a, b int) int {
		r, _, errno := unix.Syscall6(unix.SYS_KCMP, uintptr(a), uintptr(b), kcmpFilesTable, 0, 0, 0)
		if errno != 0 {
			if kerr == nil {
				kerr = fmt.Errorf("kcmp(KCMP_FILES) of %d and %d: %w", a, b, errno)
			}
			return 0
		}
		return int(r)
	}
	sort.SliceStable(order, func(i, j int) bool { return cmp(order[i], order[j]) == 1 })
	if kerr != nil {
		return nil, kerr
	}
	owner := map[int]int{}
	for i := 0; i < len(order); {
		j := i + 1
		for j < len(order) && cmp(order[i], order[j]) == 0 {
			j++
		}
		if kerr != nil {
			return nil, kerr
		}
		group := order[i:j]
		sort.Slice(group, func(a, b int) bool { return pos[group[a]] < pos[group[b]] })
		for _, pid := range group[1:] {
			owner[pid] = group[0]
		}
		i = j
	}
	for pid, first := range owner {
		st, err := procfs.ReadStat(pid)
		if err != nil {
			return nil, err
		}
		if st.Ppid != first && owner[st.Ppid] != first {
			return nil, fmt.Errorf("processes %d and %d share one fd table (CLONE_FILES) that %d's parent %d does not share: %w", first, pid, pid, st.Ppid, ErrUnsupported)
		}
	}
	return owner, nil
}

// TableOf returns the process whose fd table process pid shares and whose
// fds the dump records for it (see sharedTables), 0 if it has its own.
func (t *Tree) TableOf(pid int) int { return t.tableOf[pid] }
