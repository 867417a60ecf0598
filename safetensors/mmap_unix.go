//go:build unix

package safetensors

import (
	"fmt"
	"math"
	"os"
	"syscall"
)

// mapFile maps the size bytes of f read-only into memory and returns the
// mapping and the function that releases it.
func mapFile(f *os.File, size int64) ([]byte, func([]byte) error, error) {
	if size == 0 {
		// mmap rejects an empty mapping; ParseHeader reports the empty file.
		return []byte{}, nil, nil
	}
	if size > math.MaxInt {
		return nil, nil, fmt.Errorf("file of %d bytes is too large to map", size)
	}
	data, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, err
	}
	return data, syscall.Munmap, nil
}
