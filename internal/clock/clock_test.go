package clock

import (
	"testing"

	"github.com/rtcr/rtcr/internal/image"
)

func TestParseOffsets(t *testing.T) {
	tests := []struct {
		in         string
		mono, boot int64
		bad        bool
	}{
		{"monotonic           0         0\nboottime            0         0\n", 0, 0, false},
		{"monotonic 5 100\nboottime -3 0\n", 5e9 + 100, -3e9, false},
		{"monotonic 5\n", 0, 0, true},
		{"realtime 1 0\n", 0, 0, true},
		{"monotonic x 0\n", 0, 0, true},
	}
	for _, tc := range tests {
		off, err := ParseOffsets(tc.in)
		if (err != nil) != tc.bad {
			t.Fatalf("%q: error %v, want error %v", tc.in, err, tc.bad)
		}
		if err == nil && (off.Monotonic != tc.mono || off.Boottime != tc.boot) {
			t.Errorf("%q: got %+v", tc.in, off)
		}
	}
}

// TestOffsets checks that the new namespace's clocks read the saved values
// (plus the downtime when asked) right now.
func TestOffsets(t *testing.T) {
	mono, boot, real := host()
	saved := &image.Clocks{Monotonic: 1e12, Boottime: 2e12, Realtime: real - 5e9} // 5 s ago
	for _, jump := range []bool{false, true} {
		off := Offsets(saved, jump)
		want := int64(0)
		if jump {
			want = 5e9
		}
		gotMono := mono + off.Monotonic - saved.Monotonic
		gotBoot := boot + off.Boottime - saved.Boottime
		// host() moved on a little between the two reads: allow 50 ms.
		for _, got := range []int64{gotMono, gotBoot} {
			if got < want-50e6 || got > want+50e6 {
				t.Errorf("jump=%v: clocks advanced %d ns since the checkpoint, want about %d", jump, got, want)
			}
		}
	}
}
