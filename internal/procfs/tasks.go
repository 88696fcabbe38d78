package procfs

import (
	"strconv"
	"strings"
)

// ListTasks returns the sorted thread ids of pid, from /proc/PID/task.
func ListTasks(pid int) ([]int, error) {
	return readDirInts(procPath(pid, "task"))
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
