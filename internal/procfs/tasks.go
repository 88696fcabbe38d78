package procfs

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ListTasks returns the sorted thread ids of pid, from /proc/PID/task.
func ListTasks(pid int) ([]int, error) {
	return readDirInts(procPath(pid, "task"))
}

// ReadChildren returns the sorted child processes of pid, of every one of
// its threads, from /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN;
// exact only while pid is stopped). A thread that exited meanwhile is
// skipped; pid gone is an error matching os.ErrNotExist or ESRCH.
func ReadChildren(pid int) ([]int, error) {
	tids, err := ListTasks(pid)
	if err != nil {
		return nil, err
	}
	var kids []int
	for _, tid := range tids {
		b, err := readFile(procPath(pid, "task/"+strconv.Itoa(tid)+"/children"))
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			continue // the thread exited
		}
		if err != nil {
			return nil, err
		}
		for _, f := range strings.Fields(string(b)) {
			c, err := strconv.Atoi(f)
			if err != nil {
				return nil, fmt.Errorf("children of %d, thread %d: %q: %w", pid, tid, b, err)
			}
			kids = append(kids, c)
		}
	}
	sort.Ints(kids)
	return kids, nil
}

// ReadComm returns the contents of /proc/PID/task/TID/comm without its
// trailing newline. Other white space is kept: it is part of the name.
func ReadComm(pid, tid int) (string, error) {
	b, err := readFile(procPath(pid, "task/"+strconv.Itoa(tid)+"/comm"))
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}
