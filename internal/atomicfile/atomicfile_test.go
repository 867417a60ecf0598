package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// entries returns the names in dir, failing the test on error.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFile(t *testing.T) {
	errBoom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		old     string // existing content; "" means no file before the call
		write   func(w io.Writer) error
		wantErr error // nil: success expected
		want    string
	}{
		{
			name:  "create",
			write: func(w io.Writer) error { _, err := io.WriteString(w, "new"); return err },
			want:  "new",
		},
		{
			name:  "replace",
			old:   "old content",
			write: func(w io.Writer) error { _, err := io.WriteString(w, "new"); return err },
			want:  "new",
		},
		{
			name: "failing write keeps old file",
			old:  "old content",
			write: func(w io.Writer) error {
				// Write more than the buffer so some bytes reach the
				// temporary file before the failure.
				if _, err := w.Write(make([]byte, 3*bufSize)); err != nil {
					return err
				}
				return errBoom
			},
			wantErr: errBoom,
			want:    "old content",
		},
		{
			name:    "failing write creates nothing",
			write:   func(w io.Writer) error { return errBoom },
			wantErr: errBoom,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "out.bin")
			if tc.old != "" {
				if err := os.WriteFile(path, []byte(tc.old), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			err := WriteFile(path, tc.write)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err = %v, want %v", err, tc.wantErr)
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("error %q does not name %s", err, path)
				}
			} else if err != nil {
				t.Fatal(err)
			}

			got, rerr := os.ReadFile(path)
			switch {
			case tc.wantErr != nil && tc.old == "":
				if !errors.Is(rerr, os.ErrNotExist) {
					t.Errorf("failed write left a file at %s (read err %v)", path, rerr)
				}
			case rerr != nil:
				t.Fatal(rerr)
			case string(got) != tc.want:
				t.Errorf("content = %q, want %q", got, tc.want)
			}

			// No temporary files are left behind, whatever happened.
			names := entries(t, dir)
			for _, n := range names {
				if n != "out.bin" {
					t.Errorf("stray file %s left in %s", n, dir)
				}
			}

			if err == nil && runtime.GOOS != "windows" {
				fi, err := os.Stat(path)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Mode().Perm() != 0o644 {
					t.Errorf("mode = %v, want 0644", fi.Mode().Perm())
				}
			}
		})
	}
}

func TestWriteFilePanic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "out.bin")
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("panic did not propagate")
			}
		}()
		WriteFile(path, func(w io.Writer) error { panic("boom") })
	}()
	if names := entries(t, dir); len(names) != 0 {
		t.Errorf("panicking write left %v", names)
	}
}

func TestWriteFileUnwritable(t *testing.T) {
	// A path below a regular file cannot be created, even by root (the tests
	// may run as root, for whom a read-only folder is still writable).
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		filepath.Join(file, "out.bin"),
		filepath.Join(dir, "missing", "out.bin"),
	} {
		called := false
		err := WriteFile(path, func(w io.Writer) error { called = true; return nil })
		if err == nil {
			t.Errorf("WriteFile(%s) succeeded", path)
			continue
		}
		if !strings.Contains(err.Error(), path) {
			t.Errorf("error %q does not name %s", err, path)
		}
		if called {
			t.Errorf("write was called although the temporary file could not be created")
		}
	}
}
