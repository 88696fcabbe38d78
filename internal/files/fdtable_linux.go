package files

import (
	"fmt"
	"sort"

	"golang.org/x/sys/unix"
)

// kcmpFilesTable is KCMP_FILES of kcmp(2): do two processes share one fd table.
const kcmpFilesTable = 2

// refuseSharedTables refuses processes of the tree that share one fd table
// (clone with CLONE_FILES and no CLONE_THREAD): each would be restored
// with a table of its own, so an fd one opens or closes afterwards would
// no longer show in the other. The processes are sorted by kcmp's order
// of their tables, so only neighbours need comparing.
func refuseSharedTables(pids []int) error {
	if len(pids) < 2 {
		return nil
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
	sort.Slice(order, func(i, j int) bool { return cmp(order[i], order[j]) == 1 })
	for i := 1; i < len(order) && kerr == nil; i++ {
		if cmp(order[i-1], order[i]) == 0 {
			return fmt.Errorf("processes %d and %d share one fd table (CLONE_FILES): %w", order[i-1], order[i], ErrUnsupported)
		}
	}
	return kerr
}
