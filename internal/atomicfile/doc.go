// Package atomicfile writes files so that readers never see a partial result:
// the content goes to a temporary file in the destination folder, which is
// synced and then renamed over the destination. A crash or a failed write
// leaves either the old file or the new one, never a mixture.
package atomicfile
