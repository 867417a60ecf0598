// Package safetensors reads and writes tensors in the huggingface safetensors
// format (https://github.com/huggingface/safetensors).
//
// A safetensors file is an 8-byte little-endian header length N, N bytes of a
// UTF-8 JSON object (possibly padded with trailing spaces), and a data
// section holding the raw little-endian bytes of every tensor. Each member of
// the JSON object except "__metadata__" names a tensor and gives its dtype,
// its shape and its [begin, end) byte range relative to the start of the
// data section; "__metadata__", when present, maps strings to strings.
//
// Validation is as strict as the reference implementation: the tensors must
// cover the data section exactly, in some order, without overlap and without
// holes, and no bytes may follow the last tensor. A file with a hole between
// tensors is rejected (the reference rejects it too), so every file this
// package accepts is also accepted by the Python and Rust libraries. Unknown
// members inside a tensor entry are ignored, as the reference does; duplicate
// members anywhere in the header are an error, although encoding/json would
// silently keep the last one.
//
// ParseHeader and ReadHeader decode a header without touching tensor data,
// which is enough to recognise a model from its tensor names and shapes.
// Open maps a whole file into memory (read-only mmap on unix systems, a plain
// read elsewhere) and hands out views of tensor bytes with File.Bytes.
// Write creates a file atomically through internal/atomicfile.
//
// Errors about malformed content are *FormatError values naming the file, the
// offending key where there is one, and a remedy. No function panics on file
// contents.
package safetensors
