package files

import (
	"errors"
	"testing"
)

// TestParseTimespec reads fdinfo's "(SEC, NSEC)" values of timerfds and
// refuses anything else.
func TestParseTimespec(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		err  bool
	}{
		{"(0, 0)", 0, false},
		{"(99, 911185918)", 99_911_185_918, false},
		{"(0, 12007571)", 12_007_571, false},
		{"(1, 1000000000)", 0, true},
		{"(-1, 0)", 0, true},
		{"0, 5", 0, true},
		{"(5)", 0, true},
		{"(a, 1)", 0, true},
	}
	for _, tc := range tests {
		got, err := parseTimespec(tc.in)
		if tc.err {
			if !errors.Is(err, errBadFdinfo) {
				t.Errorf("parseTimespec(%q) = %d, %v; want errBadFdinfo", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseTimespec(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}
