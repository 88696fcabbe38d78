package cred_test

import (
	"reflect"
	"testing"

	"github.com/rtcr/rtcr/internal/cred"
)

func TestCapBits(t *testing.T) {
	for _, tc := range []struct {
		mask uint64
		want []int
	}{
		{0, nil},
		{1, []int{0}},
		{0x420, []int{5, 10}},
		{0x30000, []int{16, 17}},
		{1 << 63, []int{63}},
		{0x1ffffffffff, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19,
			20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40}},
	} {
		if got := cred.CapBits(tc.mask); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("CapBits(%#x) = %v, want %v", tc.mask, got, tc.want)
		}
	}
}

func TestDropsRoot(t *testing.T) {
	for _, tc := range []struct {
		old, new [3]uint32
		want     bool
	}{
		{[3]uint32{0, 0, 0}, [3]uint32{0, 0, 0}, false},
		{[3]uint32{0, 0, 0}, [3]uint32{1000, 1001, 1002}, true},
		{[3]uint32{0, 0, 0}, [3]uint32{1000, 1000, 0}, false}, // saved uid still root
		{[3]uint32{0, 0, 0}, [3]uint32{0, 1000, 1000}, false}, // real uid still root
		{[3]uint32{1000, 0, 1000}, [3]uint32{1000, 1000, 1000}, true},
		{[3]uint32{1000, 1000, 1000}, [3]uint32{1001, 1001, 1001}, false}, // never root
		{[3]uint32{1000, 1000, 1000}, [3]uint32{0, 0, 0}, false},
	} {
		if got := cred.DropsRoot(tc.old, tc.new); got != tc.want {
			t.Errorf("DropsRoot(%v, %v) = %v, want %v", tc.old, tc.new, got, tc.want)
		}
	}
}
