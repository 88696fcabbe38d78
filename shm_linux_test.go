package rtcr_test

import (
	"os"
	"testing"
	"time"

	"github.com/rtcr/rtcr/internal/testutil"
)

// shmDir returns a fresh directory under /dev/shm (tmpfs, where POSIX
// shared memory and semaphores live), removed at the end of the test.
func shmDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/dev/shm", "rtcr-test-")
	if err != nil {
		t.Skipf("no /dev/shm: %v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	return dir
}

// TestMemfdAndDeletedMappings checkpoints testdata/memmap.c, a parent and
// a child mapping memfds (one also open as an fd, mapped shared and
// private; one held only by the mapping) and unlinked files (one mapped
// shared by both processes with no fd left, as Python's semaphores; one
// open and mapped private), kills them and restores them: the child's
// writes show in the parent, each fd and the mappings of its file are one
// file again (writes through one are seen through the other), and the
// private mappings keep their copied pages while the others follow the
// file.
func TestMemfdAndDeletedMappings(t *testing.T) {
	testutil.RequireRoot(t)
	tg := start(t, testutil.BuildC(t, "memmap", false), "trigger", shmDir(t))
	testutil.WaitForFile(t, tg.out, "ready\n", 10*time.Second)
	tg.roundTripOK("memfd and deleted-file mappings")
}
