package promapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"

	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql"
	"github.com/prometheus/prometheus/promql/parser"

	"github.com/meshlens/meshlens/query/jsonquote"
)

// queryData is the data of a query or query_range answer.
type queryData struct {
	ResultType parser.ValueType
	Result     parser.Value
}

// encodeData writes data as JSON. Query results are encoded by hand: a
// dashboard's range query holds hundreds of thousands of points, and the
// reflection-based encoder with per-point MarshalJSON calls is several
// times slower.
func encodeData(buf *bytes.Buffer, data any) error {
	qd, ok := data.(*queryData)
	if !ok {
		b, err := json.Marshal(data)
		if err != nil {
			return err
		}
		buf.Write(b)
		return nil
	}
	b := buf.AvailableBuffer()
	b = append(b, `{"resultType":`...)
	b = appendJSONString(b, string(qd.ResultType))
	b = append(b, `,"result":`...)
	switch v := qd.Result.(type) {
	case promql.Vector:
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"metric":`...)
			b = appendLabels(b, s.Metric)
			if s.H != nil {
				b = append(b, `,"histogram":`...)
				b = appendHistogramPoint(b, s.T, s.H)
			} else {
				b = append(b, `,"value":`...)
				b = appendFloatPoint(b, s.T, s.F)
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	case promql.Matrix:
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"metric":`...)
			b = appendLabels(b, s.Metric)
			if len(s.Floats) > 0 {
				b = append(b, `,"values":[`...)
				for j, p := range s.Floats {
					if j > 0 {
						b = append(b, ',')
					}
					b = appendFloatPoint(b, p.T, p.F)
				}
				b = append(b, ']')
			}
			if len(s.Histograms) > 0 {
				b = append(b, `,"histograms":[`...)
				for j, p := range s.Histograms {
					if j > 0 {
						b = append(b, ',')
					}
					b = appendHistogramPoint(b, p.T, p.H)
				}
				b = append(b, ']')
			}
			b = append(b, '}')
		}
		b = append(b, ']')
	case promql.Scalar:
		b = appendFloatPoint(b, v.T, v.V)
	case promql.String:
		b = append(b, '[')
		b = appendTimestamp(b, v.T)
		b = append(b, ',')
		b = appendJSONString(b, v.V)
		b = append(b, ']')
	default:
		return fmt.Errorf("unexpected query result type %T", qd.Result)
	}
	b = append(b, '}')
	buf.Write(b)
	return nil
}

func appendLabels(b []byte, ls labels.Labels) []byte {
	b = append(b, '{')
	first := true
	ls.Range(func(l labels.Label) {
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendJSONString(b, l.Name)
		b = append(b, ':')
		b = appendJSONString(b, l.Value)
	})
	return append(b, '}')
}

// appendTimestamp writes milliseconds as seconds with up to three decimals,
// without the rounding noise of a float division.
func appendTimestamp(b []byte, ms int64) []byte {
	if ms < 0 {
		b = append(b, '-')
		ms = -ms
	}
	b = strconv.AppendInt(b, ms/1000, 10)
	if frac := ms % 1000; frac != 0 {
		b = append(b, '.')
		if frac < 100 {
			b = append(b, '0')
		}
		if frac < 10 {
			b = append(b, '0')
		}
		for frac%10 == 0 {
			frac /= 10
		}
		b = strconv.AppendInt(b, frac, 10)
	}
	return b
}

// appendFloatString writes a sample value as Prometheus does: a JSON string
// (so NaN and ±Inf survive), exponent form only for very small or large
// magnitudes.
func appendFloatString(b []byte, f float64) []byte {
	b = append(b, '"')
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	return append(b, '"')
}

func appendFloatPoint(b []byte, t int64, f float64) []byte {
	b = append(b, '[')
	b = appendTimestamp(b, t)
	b = append(b, ',')
	b = appendFloatString(b, f)
	return append(b, ']')
}

// appendHistogramPoint writes a native histogram in Prometheus' JSON form:
// count, sum and the non-empty buckets as [boundary rule, lower, upper, count].
func appendHistogramPoint(b []byte, t int64, h *histogram.FloatHistogram) []byte {
	b = append(b, '[')
	b = appendTimestamp(b, t)
	b = append(b, `,{"count":`...)
	b = appendFloatString(b, h.Count)
	b = append(b, `,"sum":`...)
	b = appendFloatString(b, h.Sum)
	it := h.AllBucketIterator()
	n := 0
	for it.Next() {
		bk := it.At()
		if bk.Count == 0 {
			continue
		}
		if n == 0 {
			b = append(b, `,"buckets":[`...)
		} else {
			b = append(b, ',')
		}
		n++
		// 0: (lower, upper]; 1: [lower, upper); 2: (lower, upper); 3: [lower, upper].
		rule := 2
		switch {
		case bk.LowerInclusive && bk.UpperInclusive:
			rule = 3
		case bk.LowerInclusive:
			rule = 1
		case bk.UpperInclusive:
			rule = 0
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, int64(rule), 10)
		b = append(b, ',')
		b = appendFloatString(b, bk.Lower)
		b = append(b, ',')
		b = appendFloatString(b, bk.Upper)
		b = append(b, ',')
		b = appendFloatString(b, bk.Count)
		b = append(b, ']')
	}
	if n > 0 {
		b = append(b, ']')
	}
	return append(b, "}]"...)
}

// appendJSONString writes s as a JSON string the way this API's answers
// always have: no HTML escapes, \u0008 and \u000c for backspace and form
// feed.
func appendJSONString(b []byte, s string) []byte { return jsonquote.Append(b, s, jsonquote.Style{}) }
