package image

import (
	"errors"
	"os/user"
	"testing"
)

// TestOwnerGroupsError checks that a failure to list the owner's groups is
// reported, not taken as "no supplementary groups".
func TestOwnerGroupsError(t *testing.T) {
	if _, err := user.LookupId("0"); err != nil {
		t.Skipf("no user database entry for uid 0: %v", err)
	}
	broken := errors.New("group database unreadable")
	saved := groupIDs
	groupIDs = func(*user.User) ([]string, error) { return nil, broken }
	defer func() { groupIDs = saved }()
	if _, err := ownerOf(0, false); !errors.Is(err, broken) {
		t.Fatalf("ownerOf with a failing group lookup: error %v, want %v", err, broken)
	}
}
