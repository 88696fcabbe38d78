package cred

// Exported for the external tests (package cred_test).
var (
	CapBits   = capBits
	DropsRoot = dropsRoot
)
