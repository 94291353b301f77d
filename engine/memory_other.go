//go:build !linux

package engine

// systemMemory returns 0 (unknown) where the engine has no portable way to read the machine's
// memory: the default ceiling then rests on the open-file limit alone.
func systemMemory() uint64 { return 0 }
