//go:build !unix

package demo

// lockDir does nothing where flock(2) is missing: run one demo per data
// directory.
func lockDir(string) (func(), error) { return func() {}, nil }
