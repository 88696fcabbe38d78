package procfs

import (
	"fmt"
	"strings"
)

// ReadPersonality reads /proc/PID/personality, the personality(2) flags in
// hexadecimal.
func ReadPersonality(pid int) (uint64, error) {
	path := procPath(pid, "personality")
	b, err := readFile(path)
	if err != nil {
		return 0, err
	}
	v, err := parsePersonality(b)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", path, err)
	}
	return v, nil
}

func parsePersonality(b []byte) (uint64, error) {
	return parseHex64(strings.TrimSpace(string(b)))
}

// ReadCwd returns the target of /proc/PID/cwd, the working directory.
func ReadCwd(pid int) (string, error) {
	return readlink(procPath(pid, "cwd"))
}

// ReadExe returns the target of /proc/PID/exe, the executable; it ends in
// " (deleted)" if the file was removed.
func ReadExe(pid int) (string, error) {
	return readlink(procPath(pid, "exe"))
}
