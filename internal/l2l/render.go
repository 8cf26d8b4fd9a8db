package l2l

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// Response is one answer of the record-area API before encoding.
//
// A success carries records: Rows, each with one value per entry of Fields
// (nil for null; otherwise the Go type of the field's type: int64, uint64 or
// int for Int, float64, string, bool, time.Time for the datetime types).
// A list answer also carries its Limit and Offset; a single-record answer
// (Single) carries exactly one row and no paging. A failure carries Error
// and, for validation failures, the list of problems in Errors.
type Response struct {
	Success bool
	Single  bool
	Fields  []Field
	Rows    [][]any
	Limit   int
	Offset  int
	Error   string
	Errors  []string
}

// List returns a successful list answer.
func List(fields []Field, rows [][]any, limit, offset int) Response {
	return Response{Success: true, Fields: fields, Rows: rows, Limit: limit, Offset: offset}
}

// Record returns a successful single-record answer.
func Record(fields []Field, row []any) Response {
	return Response{Success: true, Single: true, Fields: fields, Rows: [][]any{row}}
}

// Failure returns a failed answer with message msg.
func Failure(msg string) Response {
	return Response{Error: msg}
}

// Invalid returns the failed answer for an error of Parse: Error holds all
// problems in one sentence, Errors lists them one by one.
func Invalid(err error) Response {
	var qe *QueryError
	if errors.As(err, &qe) {
		return Response{Error: qe.Error(), Errors: qe.Problems}
	}
	return Response{Error: err.Error()}
}

// ContentType returns the media type of answers in format f.
func ContentType(f Format) string {
	if f == XML {
		return "application/xml; charset=utf-8"
	}
	return "application/json; charset=utf-8"
}

// Encode appends r in format f to b. micro selects six fractional digits
// for datetimes instead of three. It fails only when a value does not fit
// its field (a bug of the caller), and then b is returned unchanged.
func (r *Response) Encode(b []byte, f Format, micro bool) ([]byte, error) {
	if f == XML {
		return r.AppendXML(b, micro)
	}
	return r.AppendJSON(b, micro)
}

// AppendJSON appends r as a JSON object: success, then data (success) or
// error and errors (failure), then limit and offset (list answers).
func (r *Response) AppendJSON(b []byte, micro bool) ([]byte, error) {
	orig := b
	b = append(b, `{"success":`...)
	b = strconv.AppendBool(b, r.Success)
	if r.Success {
		if err := r.checkRows(); err != nil {
			return orig, err
		}
		b = append(b, `,"data":`...)
		if !r.Single {
			b = append(b, '[')
		}
		for i, row := range r.Rows {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			for j, f := range r.Fields {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, f.Name)
				b = append(b, ':')
				var err error
				if b, err = appendJSONValue(b, f, row[j], micro); err != nil {
					return orig, err
				}
			}
			b = append(b, '}')
		}
		if !r.Single {
			b = append(b, ']')
		}
	} else {
		b = append(b, `,"error":`...)
		b = appendJSONString(b, r.Error)
		if len(r.Errors) > 0 {
			b = append(b, `,"errors":[`...)
			for i, e := range r.Errors {
				if i > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, e)
			}
			b = append(b, ']')
		}
	}
	if r.Success && !r.Single {
		b = append(b, `,"limit":`...)
		b = strconv.AppendInt(b, int64(r.Limit), 10)
		b = append(b, `,"offset":`...)
		b = strconv.AppendInt(b, int64(r.Offset), 10)
	}
	return append(b, '}'), nil
}

// xmlHeader starts every XML answer, as in the reference API.
const xmlHeader = `<?xml version="1.0" encoding="utf-8"?>` + "\n"

// AppendXML appends r as the reference API's XML document: the header
// line, then one <response> element holding an element per envelope key
// (in the JSON order); a list's records are <resource> elements inside
// <data>, a single record's fields sit in <data> directly, and so do the
// problems of <errors> as <resource> elements. Null is written None and
// booleans True and False; there is no whitespace between elements.
func (r *Response) AppendXML(b []byte, micro bool) ([]byte, error) {
	orig := b
	b = append(b, xmlHeader...)
	b = append(b, "<response><success>"...)
	b = append(b, pyBool(r.Success)...)
	b = append(b, "</success>"...)
	if r.Success {
		if err := r.checkRows(); err != nil {
			return orig, err
		}
		b = append(b, "<data>"...)
		for _, row := range r.Rows {
			if !r.Single {
				b = append(b, "<resource>"...)
			}
			for j, f := range r.Fields {
				b = append(b, '<')
				b = append(b, f.Name...)
				b = append(b, '>')
				var err error
				if b, err = appendXMLValue(b, f, row[j], micro); err != nil {
					return orig, err
				}
				b = append(b, "</"...)
				b = append(b, f.Name...)
				b = append(b, '>')
			}
			if !r.Single {
				b = append(b, "</resource>"...)
			}
		}
		b = append(b, "</data>"...)
	} else {
		b = append(b, "<error>"...)
		b = appendXMLText(b, r.Error)
		b = append(b, "</error>"...)
		if len(r.Errors) > 0 {
			b = append(b, "<errors>"...)
			for _, e := range r.Errors {
				b = append(b, "<resource>"...)
				b = appendXMLText(b, e)
				b = append(b, "</resource>"...)
			}
			b = append(b, "</errors>"...)
		}
	}
	if r.Success && !r.Single {
		b = append(b, "<limit>"...)
		b = strconv.AppendInt(b, int64(r.Limit), 10)
		b = append(b, "</limit><offset>"...)
		b = strconv.AppendInt(b, int64(r.Offset), 10)
		b = append(b, "</offset>"...)
	}
	return append(b, "</response>"...), nil
}

func (r *Response) checkRows() error {
	if r.Single && len(r.Rows) != 1 {
		return fmt.Errorf("single-record answer with %d rows", len(r.Rows))
	}
	for i, row := range r.Rows {
		if len(row) != len(r.Fields) {
			return fmt.Errorf("row %d has %d values for %d fields", i, len(row), len(r.Fields))
		}
	}
	return nil
}

func pyBool(v bool) string {
	if v {
		return "True"
	}
	return "False"
}

// appendScalar appends the text of a non-null number or datetime, the same
// in both formats (JSON quotes datetimes itself). Strings and booleans
// differ between the formats and are written by the callers.
func appendScalar(b []byte, f Field, v any, micro bool) ([]byte, error) {
	switch f.Type {
	case Int:
		switch n := v.(type) {
		case int64:
			return strconv.AppendInt(b, n, 10), nil
		case uint64:
			return strconv.AppendUint(b, n, 10), nil
		case int:
			return strconv.AppendInt(b, int64(n), 10), nil
		}
	case Float:
		if x, ok := v.(float64); ok {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return b, fmt.Errorf("field %s: %v is not a finite number", f.Name, x)
			}
			return appendFloat(b, x), nil
		}
	case DateTime, Date, LocalDateTime:
		if t, ok := v.(time.Time); ok {
			return appendTime(b, f.Type, t, micro), nil
		}
	}
	return b, mismatch(f, v)
}

func mismatch(f Field, v any) error {
	return fmt.Errorf("field %s (%v): cannot render a %T", f.Name, f.Type, v)
}

// appendFloat writes x as Python does for floats: integral values keep a
// ".0", so a float field never looks like an int.
func appendFloat(b []byte, x float64) []byte {
	start := len(b)
	b = strconv.AppendFloat(b, x, 'f', -1, 64)
	for _, c := range b[start:] {
		if c == '.' {
			return b
		}
	}
	return append(b, ".0"...)
}

// Layouts of rendered datetimes.
const (
	layoutUTC        = "2006-01-02 15:04:05.000"
	layoutUTCMicro   = "2006-01-02 15:04:05.000000"
	layoutLocal      = "2006-01-02T15:04:05.000-07:00"
	layoutLocalMicro = "2006-01-02T15:04:05.000000-07:00"
)

func appendTime(b []byte, t Type, v time.Time, micro bool) []byte {
	switch {
	case t == Date:
		return v.UTC().AppendFormat(b, time.DateOnly)
	case t == LocalDateTime && micro:
		return v.AppendFormat(b, layoutLocalMicro)
	case t == LocalDateTime:
		return v.AppendFormat(b, layoutLocal)
	case micro:
		return v.UTC().AppendFormat(b, layoutUTCMicro)
	}
	return v.UTC().AppendFormat(b, layoutUTC)
}

func appendJSONValue(b []byte, f Field, v any, micro bool) ([]byte, error) {
	if v == nil {
		return append(b, "null"...), nil
	}
	if f.Type == Records {
		n, ok := v.(Nested)
		if !ok {
			return b, mismatch(f, v)
		}
		nr := Response{Success: true, Fields: n.Fields, Rows: n.Rows}
		if err := nr.checkRows(); err != nil {
			return b, fmt.Errorf("field %s: %w", f.Name, err)
		}
		b = append(b, '[')
		for i, row := range n.Rows {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, '{')
			for j, g := range n.Fields {
				if j > 0 {
					b = append(b, ',')
				}
				b = appendJSONString(b, g.Name)
				b = append(b, ':')
				var err error
				if b, err = appendJSONValue(b, g, row[j], micro); err != nil {
					return b, err
				}
			}
			b = append(b, '}')
		}
		return append(b, ']'), nil
	}
	if f.Type == Bool {
		x, ok := v.(bool)
		if !ok {
			return b, mismatch(f, v)
		}
		return strconv.AppendBool(b, x), nil
	}
	if f.Type == String {
		s, ok := v.(string)
		if !ok {
			return b, mismatch(f, v)
		}
		return appendJSONString(b, s), nil
	}
	if t, ok := v.(time.Time); ok && isTime(f.Type) {
		b = append(b, '"')
		b = appendTime(b, f.Type, t, micro)
		return append(b, '"'), nil
	}
	return appendScalar(b, f, v, micro)
}

func isTime(t Type) bool { return t == DateTime || t == Date || t == LocalDateTime }

func appendXMLValue(b []byte, f Field, v any, micro bool) ([]byte, error) {
	if v == nil {
		return append(b, "None"...), nil
	}
	switch f.Type {
	case Bool:
		x, ok := v.(bool)
		if !ok {
			return b, mismatch(f, v)
		}
		return append(b, pyBool(x)...), nil
	case String:
		s, ok := v.(string)
		if !ok {
			return b, mismatch(f, v)
		}
		return appendXMLText(b, s), nil
	case Records:
		n, ok := v.(Nested)
		if !ok {
			return b, mismatch(f, v)
		}
		nr := Response{Success: true, Fields: n.Fields, Rows: n.Rows}
		if err := nr.checkRows(); err != nil {
			return b, fmt.Errorf("field %s: %w", f.Name, err)
		}
		for _, row := range n.Rows {
			b = append(b, "<resource>"...)
			for j, g := range n.Fields {
				b = append(b, '<')
				b = append(b, g.Name...)
				b = append(b, '>')
				var err error
				if b, err = appendXMLValue(b, g, row[j], micro); err != nil {
					return b, err
				}
				b = append(b, "</"...)
				b = append(b, g.Name...)
				b = append(b, '>')
			}
			b = append(b, "</resource>"...)
		}
		return b, nil
	}
	return appendScalar(b, f, v, micro)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. Invalid UTF-8 becomes
// U+FFFD; control characters and U+2028/U+2029 are escaped; HTML
// characters are left alone (the answer is never embedded in a page).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendXMLText appends s as XML character data: &, < and > are escaped,
// and characters XML 1.0 cannot carry (most control characters, invalid
// UTF-8, U+FFFE, U+FFFF) become U+FFFD so the document stays well-formed.
func appendXMLText(b []byte, s string) []byte {
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		i += size
		switch {
		case r == '&':
			b = append(b, "&amp;"...)
		case r == '<':
			b = append(b, "&lt;"...)
		case r == '>':
			b = append(b, "&gt;"...)
		case r == utf8.RuneError && size == 1, !xmlChar(r):
			b = utf8.AppendRune(b, '\uFFFD')
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return b
}

// xmlChar reports whether r is in XML 1.0's Char production.
func xmlChar(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D ||
		r >= 0x20 && r <= 0xD7FF ||
		r >= 0xE000 && r <= 0xFFFD ||
		r >= 0x10000 && r <= 0x10FFFF
}
