// Package conversion is a build shim for the exponential-to-explicit histogram conversion that
// the transform processor's convert_exponential_hist_to_explicit_hist function uses: see
// ../README.md. The shim refuses every conversion, so a config using that function fails at
// start-up instead of producing wrong buckets. This collector never calls it.
package conversion

import "errors"

// BucketCounts is what the transform processor passes in (pcommon.UInt64Slice satisfies it).
type BucketCounts interface {
	Len() int
	At(i int) uint64
}

// Buckets is one side (positive or negative) of an exponential histogram.
type Buckets struct {
	Offset int32
	Counts BucketCounts
}

// ExponentialHistogram is the input of ToExplicit.
type ExponentialHistogram struct {
	Count         uint64
	Scale         int32
	ZeroThreshold float64
	ZeroCount     uint64
	Positive      Buckets
	Negative      Buckets
}

// ToExplicit always fails in the shim.
func ToExplicit(_ ExponentialHistogram, _ []float64, _ string) ([]uint64, error) {
	return nil, errors.New("exponential histogram conversion is not available in this collector build")
}
