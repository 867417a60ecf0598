package cuda

import (
	"errors"
	"fmt"
)

// Result is a CUresult, the status code every driver API call returns.
type Result int32

// The results the package handles specially; the rest are reported by name.
const (
	Success            Result = 0
	ErrorInvalidValue  Result = 1
	ErrorOutOfMemory   Result = 2
	ErrorNoDevice      Result = 100
	ErrorInvalidDevice Result = 101
	ErrorInvalidPTX    Result = 218
	ErrorNotFound      Result = 500
)

// resultNames names the common CUresults (cuda.h), for when the driver cannot be
// asked (cuGetErrorName failed or the driver is gone).
var resultNames = map[Result]string{
	0: "CUDA_SUCCESS", 1: "CUDA_ERROR_INVALID_VALUE", 2: "CUDA_ERROR_OUT_OF_MEMORY",
	3: "CUDA_ERROR_NOT_INITIALIZED", 4: "CUDA_ERROR_DEINITIALIZED", 34: "CUDA_ERROR_STUB_LIBRARY",
	46: "CUDA_ERROR_DEVICE_UNAVAILABLE", 100: "CUDA_ERROR_NO_DEVICE", 101: "CUDA_ERROR_INVALID_DEVICE",
	200: "CUDA_ERROR_INVALID_IMAGE", 201: "CUDA_ERROR_INVALID_CONTEXT", 209: "CUDA_ERROR_NO_BINARY_FOR_GPU",
	218: "CUDA_ERROR_INVALID_PTX", 221: "CUDA_ERROR_JIT_COMPILER_NOT_FOUND", 222: "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
	400: "CUDA_ERROR_INVALID_HANDLE", 500: "CUDA_ERROR_NOT_FOUND", 600: "CUDA_ERROR_NOT_READY",
	700: "CUDA_ERROR_ILLEGAL_ADDRESS", 701: "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", 702: "CUDA_ERROR_LAUNCH_TIMEOUT",
	716: "CUDA_ERROR_MISALIGNED_ADDRESS", 719: "CUDA_ERROR_LAUNCH_FAILED", 999: "CUDA_ERROR_UNKNOWN",
}

// Error is a failed driver call: the call, its CUresult, the result's name and
// description, and any detail (such as a JIT error log).
type Error struct {
	Call   string
	Code   Result
	Name   string
	Desc   string
	Detail string
}

func (e *Error) Error() string {
	s := fmt.Sprintf("%s: %s (%d)", e.Call, e.Name, int32(e.Code))
	if e.Desc != "" {
		s += ": " + e.Desc
	}
	if e.Detail != "" {
		s += "\n" + e.Detail
	}
	return s
}

// IsOutOfMemory reports whether err is a driver CUDA_ERROR_OUT_OF_MEMORY.
func IsOutOfMemory(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == ErrorOutOfMemory
}

// namer asks the driver for a result's name and description; nil when no driver.
type namer func(r Result) (name, desc string)

// newError makes the Error for call returning r, naming r through ask when it
// answers and the built-in table otherwise.
func newError(call string, r Result, ask namer) *Error {
	e := &Error{Call: call, Code: r}
	if ask != nil {
		e.Name, e.Desc = ask(r)
	}
	if e.Name == "" {
		e.Name = resultNames[r]
	}
	if e.Name == "" {
		e.Name = "CUresult"
	}
	return e
}
