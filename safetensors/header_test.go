package safetensors

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// build returns a file: the length prefix, header and dataLen zero bytes.
func build(header string, dataLen int) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(header)))
	b = append(b, header...)
	return append(b, make([]byte, dataLen)...)
}

// withLength returns an 8-byte length prefix claiming n header bytes,
// followed by rest.
func withLength(n uint64, rest string) []byte {
	return append(binary.LittleEndian.AppendUint64(nil, n), rest...)
}

// validFile is a small well-formed file: a F32 [2] at [0,8) and an I64 [] at
// [8,16), with metadata.
var validFile = build(`{"__metadata__":{"format":"pt"},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"I64","shape":[],"data_offsets":[8,16]}}`, 16)

func TestParseHeaderValid(t *testing.T) {
	for _, tc := range []struct {
		name    string
		data    []byte
		want    []TensorInfo
		wantMD  map[string]string
		dataLen int64
	}{
		{
			name: "basic",
			data: validFile,
			want: []TensorInfo{
				{Name: "a", DType: F32, Shape: []int{2}, Offsets: [2]int64{0, 8}},
				{Name: "b", DType: I64, Shape: []int{}, Offsets: [2]int64{8, 16}},
			},
			wantMD: map[string]string{"format": "pt"},
		},
		{
			name: "empty object",
			data: build(`{}`, 0),
			want: []TensorInfo{},
		},
		{
			name: "padded with spaces, whitespace in arrays, unknown member ignored",
			data: build(`{ "x" : {"dtype":"U8", "shape":[ 1 , 3 ], "data_offsets":[ 0 , 3 ], "extra": {"a":[1]}} }      `, 3),
			want: []TensorInfo{{Name: "x", DType: U8, Shape: []int{1, 3}, Offsets: [2]int64{0, 3}}},
		},
		{
			name: "sorted by offsets then name; zero-size tensors share an offset",
			data: build(`{"z":{"dtype":"F16","shape":[2],"data_offsets":[0,4]},`+
				`"c":{"dtype":"F32","shape":[0,5],"data_offsets":[4,4]},`+
				`"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},`+
				`"a":{"dtype":"BF16","shape":[3,0],"data_offsets":[4,4]}}`, 8),
			want: []TensorInfo{
				{Name: "z", DType: F16, Shape: []int{2}, Offsets: [2]int64{0, 4}},
				{Name: "a", DType: BF16, Shape: []int{3, 0}, Offsets: [2]int64{4, 4}},
				{Name: "c", DType: F32, Shape: []int{0, 5}, Offsets: [2]int64{4, 4}},
				{Name: "b", DType: F32, Shape: []int{1}, Offsets: [2]int64{4, 8}},
			},
		},
		{
			name: "null metadata means none",
			data: build(`{"__metadata__":null}`, 0),
			want: []TensorInfo{},
		},
		{
			name:   "escaped names",
			data:   build(`{"__metadata__":{"k\u00e9":"v\n"},"a\"b\u00e9":{"dtype":"BOOL","shape":[1],"data_offsets":[0,1]}}`, 1),
			want:   []TensorInfo{{Name: "a\"bé", DType: BOOL, Shape: []int{1}, Offsets: [2]int64{0, 1}}},
			wantMD: map[string]string{"ké": "v\n"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseHeader(tc.data, int64(len(tc.data)))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(h.Tensors, tc.want) {
				t.Errorf("Tensors = %+v, want %+v", h.Tensors, tc.want)
			}
			if !reflect.DeepEqual(h.Metadata, tc.wantMD) {
				t.Errorf("Metadata = %v, want %v", h.Metadata, tc.wantMD)
			}
			n := binary.LittleEndian.Uint64(tc.data)
			if h.DataStart != 8+int64(n) {
				t.Errorf("DataStart = %d, want %d", h.DataStart, 8+n)
			}
		})
	}
}

// tensor returns a header member for tensor name.
func tensor(name, dtype, shape, offsets string) string {
	return strconv.Quote(name) + `:{"dtype":"` + dtype + `","shape":` + shape + `,"data_offsets":` + offsets + `}`
}

func TestParseHeaderMalformed(t *testing.T) {
	type test struct {
		name string
		data []byte
		key  string // FormatError.Key; the message must quote it when set.
		// anyKey skips the Key check: a file truncated inside its data
		// section is reported against the first tensor that no longer fits.
		anyKey bool
		msg    string // Fragment the message must contain, to keep errors distinct.
	}
	tests := []test{
		{name: "empty file", data: nil, msg: "fewer than the 8-byte header length"},
		{name: "7 bytes", data: make([]byte, 7), msg: "fewer than the 8-byte header length"},
		{name: "absurd header length", data: withLength(1<<62, "{}"), msg: "exceeds the 104857600-byte limit"},
		{name: "header length past limit", data: withLength(MaxHeaderSize+1, "{}"), msg: "exceeds the 104857600-byte limit"},
		{name: "header length larger than file", data: withLength(100, "{}"), msg: "exceeds the 2 bytes that follow"},
		{name: "zero header length", data: withLength(0, ""), msg: "header is empty"},
		{name: "not JSON", data: build("hello world", 0), msg: "header is not valid JSON"},
		{name: "broken JSON", data: build(`{"a":`, 0), msg: "not valid JSON"},
		{name: "JSON array", data: build(`[1,2]`, 0), msg: "header is an array"},
		{name: "JSON string", data: build(`"x"`, 0), msg: "header is a string"},
		{name: "data after object", data: build(`{} {}`, 0), msg: "data after the JSON object"},
		{name: "invalid UTF-8", data: build("{\"\xff\":1}", 0), msg: "not valid UTF-8"},
		{name: "entry not object", key: "a", data: build(`{"a":[1]}`, 0), msg: "entry is an array"},
		{
			name: "duplicate names", key: "a",
			data: build(`{`+tensor("a", "U8", "[1]", "[0,1]")+`,`+tensor("a", "U8", "[1]", "[1,2]")+`}`, 2),
			msg:  "appears twice",
		},
		{
			name: "duplicate member in entry", key: "a",
			data: build(`{"a":{"dtype":"U8","dtype":"U8","shape":[1],"data_offsets":[0,1]}}`, 1),
			msg:  `"dtype" twice`,
		},
		{name: "missing dtype", key: "a", data: build(`{"a":{"shape":[1],"data_offsets":[0,1]}}`, 1), msg: "no dtype"},
		{name: "missing shape", key: "a", data: build(`{"a":{"dtype":"U8","data_offsets":[0,1]}}`, 1), msg: "no shape"},
		{name: "missing offsets", key: "a", data: build(`{"a":{"dtype":"U8","shape":[1]}}`, 1), msg: "no data_offsets"},
		{name: "unknown dtype", key: "w", data: build(`{`+tensor("w", "F31", "[1]", "[0,4]")+`}`, 4), msg: `dtype "F31" is unknown`},
		{name: "dtype not string", key: "w", data: build(`{"w":{"dtype":4,"shape":[1],"data_offsets":[0,4]}}`, 4), msg: "dtype is a number"},
		{name: "negative dim", key: "w", data: build(`{`+tensor("w", "U8", "[-1]", "[0,0]")+`}`, 0), msg: "negative"},
		{name: "fractional dim", key: "w", data: build(`{`+tensor("w", "U8", "[1.5]", "[0,1]")+`}`, 1), msg: "not an integer"},
		{name: "exponent dim", key: "w", data: build(`{`+tensor("w", "U8", "[1e0]", "[0,1]")+`}`, 1), msg: "not an integer"},
		{name: "string dim", key: "w", data: build(`{`+tensor("w", "U8", `["1"]`, "[0,1]")+`}`, 1), msg: "shape[0] is a string"},
		{name: "shape not array", key: "w", data: build(`{`+tensor("w", "U8", `null`, "[0,1]")+`}`, 1), msg: "shape is null"},
		{name: "huge dim", key: "w", data: build(`{`+tensor("w", "U8", "[99999999999999999999]", "[0,1]")+`}`, 1), msg: "too large"},
		{name: "shape overflow", key: "w", data: build(`{`+tensor("w", "F64", "[2147483647,2147483647,2147483647]", "[0,8]")+`}`, 8), msg: "overflows"},
		{name: "negative offset", key: "w", data: build(`{`+tensor("w", "U8", "[1]", "[-1,0]")+`}`, 1), msg: "negative"},
		{name: "three offsets", key: "w", data: build(`{`+tensor("w", "U8", "[1]", "[0,1,2]")+`}`, 1), msg: "3 elements"},
		{name: "begin > end", key: "w", data: build(`{`+tensor("w", "U8", "[0]", "[8,0]")+`}`, 8), msg: "begin 8 > end 0"},
		{name: "dtype/shape mismatch", key: "w", data: build(`{`+tensor("w", "F32", "[3]", "[0,8]")+`}`, 8), msg: "needs 12 bytes"},
		{name: "out-of-bounds end", key: "w", data: build(`{`+tensor("w", "F32", "[2]", "[0,8]")+`}`, 4), msg: "past the 4-byte data section"},
		{
			name: "overlapping offsets", key: "b",
			data: build(`{`+tensor("a", "F32", "[2]", "[0,8]")+`,`+tensor("b", "F32", "[2]", "[4,12]")+`}`, 12),
			msg:  `overlap tensor "a"`,
		},
		{
			name: "zero-size tensor inside another", key: "b",
			data: build(`{`+tensor("a", "F32", "[2]", "[0,8]")+`,`+tensor("b", "F32", "[0]", "[4,4]")+`}`, 8),
			msg:  `overlap tensor "a"`,
		},
		{
			name: "hole between tensors", key: "b",
			data: build(`{`+tensor("a", "F32", "[1]", "[0,4]")+`,`+tensor("b", "F32", "[1]", "[8,12]")+`}`, 12),
			msg:  "hole of 4 bytes",
		},
		{name: "unused bytes at end", data: build(`{`+tensor("a", "F32", "[1]", "[0,4]")+`}`, 8), msg: "cover only 4"},
		{name: "metadata non-string value", key: metadataKey, data: build(`{"__metadata__":{"k":1}}`, 0), msg: `value of "k" is a number`},
		{name: "metadata not object", key: metadataKey, data: build(`{"__metadata__":"x"}`, 0), msg: "is a string"},
		{name: "metadata duplicate key", key: metadataKey, data: build(`{"__metadata__":{"k":"a","k":"b"}}`, 0), msg: `"k" twice`},
	}
	// A valid file cut at several points: inside the length prefix, inside
	// the header, at the start of the data section and inside it.
	n := int(binary.LittleEndian.Uint64(validFile))
	for _, cut := range []int{0, 1, 7, 8, 9, 8 + n/2, 8 + n - 1, 8 + n, 8 + n + 1, len(validFile) - 1} {
		tests = append(tests, test{name: "truncated at " + strconv.Itoa(cut), data: validFile[:cut], anyKey: true})
	}

	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ParseHeader(tc.data, int64(len(tc.data)))
			if err == nil {
				t.Fatalf("no error; header %+v", h)
			}
			t.Log(err)
			var fe *FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("error %v is %T, want *FormatError", err, err)
			}
			if !tc.anyKey && fe.Key != tc.key {
				t.Errorf("Key = %q, want %q", fe.Key, tc.key)
			}
			if tc.key != "" && !strings.Contains(err.Error(), strconv.Quote(tc.key)) {
				t.Errorf("error %q does not quote key %q", err, tc.key)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not contain %q", err, tc.msg)
			}

			// The same bytes as a file: Open and ReadHeader name the path.
			path := filepath.Join(t.TempDir(), "bad.safetensors")
			if err := os.WriteFile(path, tc.data, 0o644); err != nil {
				t.Fatal(err)
			}
			for name, fn := range map[string]func(string) error{
				"Open":       func(p string) error { f, err := Open(p); f.closeIfOpen(); return err },
				"ReadHeader": func(p string) error { _, err := ReadHeader(p); return err },
			} {
				err := fn(path)
				if err == nil {
					t.Errorf("%s succeeded", name)
					continue
				}
				if !strings.Contains(err.Error(), path) {
					t.Errorf("%s error %q does not name %s", name, err, path)
				}
				if tc.key != "" && !strings.Contains(err.Error(), strconv.Quote(tc.key)) {
					t.Errorf("%s error %q does not quote key %q", name, err, tc.key)
				}
			}
		})
	}
}

// closeIfOpen closes f when it is not nil.
func (f *File) closeIfOpen() {
	if f != nil {
		f.Close()
	}
}

func TestParseHeaderPartialData(t *testing.T) {
	// ParseHeader needs only the first 8+N bytes; offsets are checked
	// against fileSize.
	n := 8 + int(binary.LittleEndian.Uint64(validFile))
	h, err := ParseHeader(validFile[:n], int64(len(validFile)))
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Tensors) != 2 {
		t.Errorf("got %d tensors, want 2", len(h.Tensors))
	}
	// Less than the header is the caller's mistake, reported as such.
	if _, err := ParseHeader(validFile[:n-1], int64(len(validFile))); err == nil || !strings.Contains(err.Error(), "pass the whole header") {
		t.Errorf("short data: err = %v", err)
	}
	if _, err := ParseHeader(validFile[:4], int64(len(validFile))); err == nil || !strings.Contains(err.Error(), "at least the first 8 bytes") {
		t.Errorf("4 bytes: err = %v", err)
	}
	if _, err := ParseHeader(validFile, int64(len(validFile))-1); err == nil || !strings.Contains(err.Error(), "less than the") {
		t.Errorf("fileSize < len(data): err = %v", err)
	}
}
