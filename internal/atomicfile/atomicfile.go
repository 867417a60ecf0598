package atomicfile

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// bufSize is the size of the buffer between write and the temporary file.
const bufSize = 1 << 20

// WriteFile atomically replaces the file at path with the bytes that write
// writes to w. The bytes go to a temporary file named "."+base+".tmp-*" in
// the same folder, which is flushed, synced, closed, given mode 0644 and
// renamed over path; then the folder is synced, on a best-effort basis, so
// that the rename survives a crash.
//
// WriteFile fails when the temporary file cannot be created (the folder does
// not exist or is not writable), when write returns an error, or when
// flushing, syncing, closing, chmod or rename fail. On failure the temporary
// file is removed, an existing file at path is left untouched, and the
// returned error names path and wraps the cause. If write panics, the
// temporary file is removed and the panic continues.
func WriteFile(path string, write func(w io.Writer) error) error {
	dir, base := filepath.Dir(path), filepath.Base(path)
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			f.Close() // May already be closed; the error does not matter.
			os.Remove(tmp)
		}
	}()

	bw := bufio.NewWriterSize(f, bufSize)
	if err := write(bw); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("atomicfile: write %s: sync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("atomicfile: write %s: close: %w", path, err)
	}
	if err := os.Chmod(tmp, 0o644); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("atomicfile: write %s: %w", path, err)
	}
	committed = true
	syncDir(dir)
	return nil
}

// syncDir syncs the folder dir so that a rename in it is durable. Errors are
// ignored: some systems (Windows, some network file systems) cannot open or
// sync a folder, and the data itself is already synced.
func syncDir(dir string) {
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	d.Sync()
	d.Close()
}
