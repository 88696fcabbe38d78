package procfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
)

// ParseAuxv parses the contents of a /proc/PID/auxv file: pairs of 8-byte
// little-endian words (type, value). It returns the words up to and
// including the AT_NULL pair (type 0). It fails if the length is not a
// multiple of 16 or there is no AT_NULL pair.
func ParseAuxv(b []byte) ([]uint64, error) {
	w, err := parseAuxv(b)
	if err != nil {
		return nil, fmt.Errorf("parse auxv: %w", err)
	}
	return w, nil
}

// ReadAuxv reads and parses /proc/PID/auxv.
func ReadAuxv(pid int) ([]uint64, error) {
	path := procPath(pid, "auxv")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	w, err := parseAuxv(b)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return w, nil
}

func parseAuxv(b []byte) ([]uint64, error) {
	if len(b)%16 != 0 {
		return nil, fmt.Errorf("length %d is not a multiple of 16", len(b))
	}
	words := make([]uint64, 0, len(b)/8)
	for i := 0; i+16 <= len(b); i += 16 {
		typ := binary.LittleEndian.Uint64(b[i:])
		val := binary.LittleEndian.Uint64(b[i+8:])
		words = append(words, typ, val)
		if typ == 0 {
			return words, nil
		}
	}
	return nil, errors.New("no AT_NULL entry")
}
