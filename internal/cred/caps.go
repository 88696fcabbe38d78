package cred

import "math/bits"

// capBits returns the numbers of the capabilities set in mask, lowest
// first (bit n of a capability set is capability n).
func capBits(mask uint64) []int {
	var out []int
	for mask != 0 {
		n := bits.TrailingZeros64(mask)
		out = append(out, n)
		mask &^= 1 << n
	}
	return out
}

// dropsRoot reports whether setresuid from the real, effective and saved
// uids old to new leaves root: one of old is 0 and none of new is. The
// kernel then clears the permitted and effective sets unless keep-caps (or
// no-setuid-fixup) is on, and clears the ambient set in any case
// (capabilities(7), "Effect of user ID changes on capabilities").
func dropsRoot(old, new [3]uint32) bool {
	return (old[0] == 0 || old[1] == 0 || old[2] == 0) &&
		new[0] != 0 && new[1] != 0 && new[2] != 0
}
