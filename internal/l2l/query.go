package l2l

import (
	"errors"
	"fmt"
	"math"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Op is a filter operator: the suffix after "__" in an argument name.
type Op string

// Filter operators. OpEq is written without a suffix (field=value).
const (
	OpEq     Op = ""
	OpLt     Op = "lt"
	OpLte    Op = "lte"
	OpGt     Op = "gt"
	OpGte    Op = "gte"
	OpIsNull Op = "isnull"
)

var ops = map[Op]bool{OpLt: true, OpLte: true, OpGt: true, OpGte: true, OpIsNull: true}

// Filter keeps the records whose field compares to Value with Op.
//
// Value has the Go type of the field's type: int64 (Int), float64 (Float),
// string (String), bool (Bool), time.Time in UTC (DateTime, LocalDateTime,
// and Date at midnight). For OpIsNull it is a bool: true keeps the records
// where the field is null.
type Filter struct {
	Field string
	Op    Op
	Value any
}

// Order sorts by one field, descending when Desc is set.
type Order struct {
	Field string
	Desc  bool
}

// Format is the encoding of an answer.
type Format uint8

// Answer formats.
const (
	JSON Format = iota
	XML
)

// Query is a parsed, validated request for records of one area.
type Query struct {
	// Filters all must hold (AND), in argument-name order.
	Filters []Filter
	// Limit is the page size (1..the area's maximum); Offset the number of
	// records skipped (>= 0).
	Limit  int
	Offset int
	// OrderBy is never empty: it is what the request asked for, followed by
	// id ascending unless id is already in it, so that paging is stable.
	OrderBy []Order
	// Fields are the fields to return, in the requested order; empty means
	// every field of the area in schema order.
	Fields []string
	// Custom are the filters on custom properties (custom__<name>[__op]),
	// with Field the property's name and a string Value (a bool for
	// isnull: a property a record does not have is null). CustomFields are
	// the properties named in fields= (custom__<name>), without the prefix.
	// Both stay empty unless the schema has custom properties.
	Custom       []Filter
	CustomFields []string
	// Format is the answer's encoding; Microseconds asks for datetimes with
	// six fractional digits instead of three.
	Format       Format
	Microseconds bool
}

// Argument names with a meaning of their own. Fields may not use them.
const (
	argLimit        = "limit"
	argOffset       = "offset"
	argOrderBy      = "order_by"
	argFields       = "fields"
	argFormat       = "format"
	argMicroseconds = "l2lfmt_microseconds"
)

// reserved are the argument names that are not filters: the control
// arguments above, and those handled outside this package (authentication,
// proxying, request signing, the POST action, the parts watermark), which
// Parse ignores.
var reserved = map[string]bool{
	argLimit: true, argOffset: true, argOrderBy: true, argFields: true,
	argFormat: true, argMicroseconds: true,
	"auth": true, "realuser": true, "_server": true, "_expiration": true,
	"_signature": true, "_action": true, "min_watermark": true,
}

var control = map[string]bool{
	argLimit: true, argOffset: true, argOrderBy: true, argFields: true,
	argFormat: true, argMicroseconds: true,
}

// ErrInvalid is matched (errors.Is) by every error Parse returns: the
// request's arguments are wrong, and the answer is a validation failure.
var ErrInvalid = errors.New("invalid query")

// MaxFilters is the most filters (on fields and custom properties
// together) one request may give: each is a condition ClickHouse
// evaluates on every row it reads.
const MaxFilters = 20

// Times ClickHouse's DateTime holds: a time outside [MinTime, EndTime)
// cannot be compared with a stored one (it would wrap around), so a
// filter or window naming one is refused.
var (
	MinTime = time.Date(1970, 1, 1, 0, 0, 0, 0, time.UTC)
	EndTime = time.Date(2106, 1, 1, 0, 0, 0, 0, time.UTC)
)

// ErrOutOfRange is matched (errors.Is) by ParseValue's error for a time
// outside [MinTime, EndTime).
var ErrOutOfRange = errors.New("outside the times ClickHouse holds")

// QueryError lists every problem Parse found, in argument-name order.
type QueryError struct {
	Problems []string
}

func (e *QueryError) Error() string { return strings.Join(e.Problems, "; ") }

// Is reports whether target is ErrInvalid.
func (e *QueryError) Is(target error) bool { return target == ErrInvalid }

// Parse reads the query arguments of a request for records of the area s
// describes. It reports every problem at once in a *QueryError. Empty
// control arguments (limit=, order_by=, ...) mean their default.
func Parse(args url.Values, s *Schema) (Query, error) {
	q := Query{Limit: s.defaultLimit}
	var problems []string
	bad := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }

	keys := make([]string, 0, len(args))
	for k := range args {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, key := range keys {
		vals := args[key]
		if len(vals) != 1 {
			if !reserved[key] || control[key] {
				bad("argument %q is given %d times; give it once", key, len(vals))
			}
			continue
		}
		v := vals[0]
		switch key {
		case argLimit:
			if v == "" {
				continue
			}
			n, err := strconv.Atoi(v)
			switch {
			case err != nil:
				bad("limit %q is not a whole number", v)
			case n < 1:
				bad("limit %d is below 1", n)
			case n > s.maxLimit:
				bad("limit %d is above the maximum %d of %s", n, s.maxLimit, s.area)
			default:
				q.Limit = n
			}
		case argOffset:
			if v == "" {
				continue
			}
			n, err := strconv.Atoi(v)
			switch {
			case err != nil:
				bad("offset %q is not a whole number", v)
			case n < 0:
				bad("offset %d is negative", n)
			default:
				q.Offset = n
			}
		case argOrderBy:
			for _, item := range splitList(v) {
				o := Order{Field: item}
				if rest, ok := strings.CutPrefix(item, "-"); ok {
					o = Order{Field: rest, Desc: true}
				}
				f, ok := s.resolve(o.Field)
				if !ok {
					bad("order_by: unknown field %q in %s", o.Field, s.area)
					continue
				}
				if f.AfterRead {
					bad("order_by: %s of %s is computed after the read and cannot be ordered by", f.Name, s.area)
					continue
				}
				o.Field = f.Name
				if !slices.ContainsFunc(q.OrderBy, func(p Order) bool { return p.Field == o.Field }) {
					q.OrderBy = append(q.OrderBy, o)
				}
			}
		case argFields:
			for _, name := range splitList(v) {
				if prop, ok := strings.CutPrefix(name, customPrefix); ok && s.custom {
					if !customName.MatchString(prop) {
						bad("fields: %q is not a custom property name", name)
					} else if !slices.Contains(q.CustomFields, prop) {
						q.CustomFields = append(q.CustomFields, prop)
					}
					continue
				}
				if _, ok := s.Field(name); !ok {
					bad("fields: unknown field %q in %s", name, s.area)
					continue
				}
				if !slices.Contains(q.Fields, name) {
					q.Fields = append(q.Fields, name)
				}
			}
		case argFormat:
			switch strings.ToLower(v) {
			case "", "json":
				q.Format = JSON
			case "xml":
				q.Format = XML
			default:
				bad("format %q is not json or xml", v)
			}
		case argMicroseconds:
			if v == "" {
				continue
			}
			b, err := parseBool(v)
			if err != nil {
				bad("l2lfmt_microseconds %q is not true or false", v)
			}
			q.Microseconds = b
		default:
			if reserved[key] {
				continue
			}
			if strings.HasPrefix(key, customPrefix) && s.custom {
				f, err := parseCustomFilter(key, v)
				if err != nil {
					bad("%s", err)
					continue
				}
				q.Custom = append(q.Custom, f)
				continue
			}
			f, err := parseFilter(s, key, v)
			if err != nil {
				bad("%s", err)
				continue
			}
			q.Filters = append(q.Filters, f)
		}
	}
	if n := len(q.Filters) + len(q.Custom); n > MaxFilters {
		bad("%d filters: at most %d filters per request; narrow the request with fewer, more selective ones", n, MaxFilters)
	}
	if len(problems) > 0 {
		return Query{}, &QueryError{Problems: problems}
	}
	if len(q.OrderBy) == 0 {
		q.OrderBy = append(q.OrderBy, s.defaultOrder...)
	}
	if !slices.ContainsFunc(q.OrderBy, func(o Order) bool { return o.Field == "id" }) {
		q.OrderBy = append(q.OrderBy, Order{Field: "id"})
	}
	return q, nil
}

// FormatOf returns the answer format a request asks for, JSON when it asks
// for none or for one Parse would reject. Use it to answer requests that
// fail before their query is parsed (authentication, unknown area).
func FormatOf(args url.Values) Format {
	if strings.EqualFold(args.Get(argFormat), "xml") {
		return XML
	}
	return JSON
}

func splitList(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func parseFilter(s *Schema, key, raw string) (Filter, error) {
	name, op := key, OpEq
	f, ok := s.resolve(name)
	if !ok {
		i := strings.LastIndex(key, "__")
		if i < 0 {
			if strings.HasPrefix(key, "custom__") {
				return Filter{}, fmt.Errorf("%s has no custom properties (%q)", s.area, key)
			}
			return Filter{}, fmt.Errorf("unknown field %q in %s", key, s.area)
		}
		name, op = key[:i], Op(key[i+2:])
		if f, ok = s.resolve(name); !ok {
			if strings.HasPrefix(key, "custom__") {
				return Filter{}, fmt.Errorf("%s has no custom properties (%q)", s.area, key)
			}
			return Filter{}, fmt.Errorf("unknown field %q in %s", name, s.area)
		}
		if !ops[op] {
			return Filter{}, fmt.Errorf("unknown operator %q in %q (known: lt, lte, gt, gte, isnull)", string(op), key)
		}
	}
	if f.AfterRead {
		return Filter{}, fmt.Errorf("%s: %s of %s is computed after the read and cannot be filtered on", key, f.Name, s.area)
	}
	if op == OpIsNull {
		b, err := parseBool(raw)
		if err != nil {
			return Filter{}, fmt.Errorf("%s: value %q is not True or False", key, raw)
		}
		return Filter{Field: f.Name, Op: op, Value: b}, nil
	}
	v, err := ParseValue(f.Type, raw)
	if err != nil {
		return Filter{}, fmt.Errorf("%s: %w", key, err)
	}
	return Filter{Field: f.Name, Op: op, Value: v}, nil
}

// customPrefix starts the argument names of custom properties.
const customPrefix = "custom__"

// customName is the shape of a custom property's name: a lower-case
// identifier without "__", the operator separator.
var customName = regexp.MustCompile(`^[a-z0-9]+(_[a-z0-9]+)*$`)

// CustomName reports whether name is a valid custom property name.
func CustomName(name string) bool { return customName.MatchString(name) }

// parseCustomFilter reads custom__<name>[__<op>]=<value>. Values are
// strings: properties are text.
func parseCustomFilter(key, raw string) (Filter, error) {
	rest := strings.TrimPrefix(key, customPrefix)
	name, op := rest, OpEq
	if i := strings.LastIndex(rest, "__"); i >= 0 {
		name, op = rest[:i], Op(rest[i+2:])
		if !ops[op] {
			return Filter{}, fmt.Errorf("unknown operator %q in %q (known: lt, lte, gt, gte, isnull)", string(op), key)
		}
	}
	if !customName.MatchString(name) {
		return Filter{}, fmt.Errorf("%q: %q is not a custom property name", key, name)
	}
	if op == OpIsNull {
		b, err := parseBool(raw)
		if err != nil {
			return Filter{}, fmt.Errorf("%s: value %q is not True or False", key, raw)
		}
		return Filter{Field: name, Op: op, Value: b}, nil
	}
	return Filter{Field: name, Op: op, Value: raw}, nil
}

// ParseValue parses a filter value for a field of type t. See Filter for
// the Go types it returns.
func ParseValue(t Type, raw string) (any, error) {
	switch t {
	case Int:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("value %q is not a whole number", raw)
		}
		return n, nil
	case Float:
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("value %q is not a number", raw)
		}
		return f, nil
	case String:
		return raw, nil
	case Bool:
		b, err := parseBool(raw)
		if err != nil {
			return nil, fmt.Errorf("value %q is not True or False", raw)
		}
		return b, nil
	case DateTime, LocalDateTime:
		ts, err := parseDateTime(raw)
		if err != nil {
			return nil, fmt.Errorf("value %q is not a UTC ISO 8601 date-time (2016-05-05T22:39:47) or date (2016-05-05)", raw)
		}
		return inRange(ts, raw)
	case Date:
		d, err := time.Parse(time.DateOnly, raw)
		if err != nil {
			return nil, fmt.Errorf("value %q is not an ISO 8601 date (2016-05-05)", raw)
		}
		return inRange(d, raw)
	}
	return nil, fmt.Errorf("field type %v has no filter values", t)
}

// inRange returns t when ClickHouse's DateTime holds it.
func inRange(t time.Time, raw string) (any, error) {
	if t.Before(MinTime) || !t.Before(EndTime) {
		return nil, fmt.Errorf("%s is %w: give a time from %s to before %s (UTC)", raw, ErrOutOfRange,
			MinTime.Format(time.DateOnly), EndTime.Format(time.DateOnly))
	}
	return t, nil
}

// parseBool accepts what Django's boolean fields accept, case-insensitively:
// True, T, 1 and False, F, 0.
func parseBool(s string) (bool, error) {
	switch {
	case s == "1" || strings.EqualFold(s, "true") || strings.EqualFold(s, "t"):
		return true, nil
	case s == "0" || strings.EqualFold(s, "false") || strings.EqualFold(s, "f"):
		return false, nil
	}
	return false, fmt.Errorf("not a boolean: %q", s)
}

// parseDateTime accepts an ISO 8601 date-time, "T" or a space between date
// and time, an optional fraction, and an optional zone (Z or an offset; none
// means UTC), or a plain date meaning its midnight UTC.
func parseDateTime(s string) (time.Time, error) {
	if len(s) == len(time.DateOnly) {
		return time.Parse(time.DateOnly, s)
	}
	if len(s) > 10 && s[10] == ' ' {
		s = s[:10] + "T" + s[11:]
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC(), nil
	}
	t, err := time.ParseInLocation("2006-01-02T15:04:05.999999999", s, time.UTC)
	if err != nil {
		return time.Time{}, err
	}
	return t.UTC(), nil
}

// Encode returns the query arguments that Parse turns back into q (for the
// schema q was parsed with), custom-property filters and fields included.
// Clients and tests use it to build requests.
func (q Query) Encode(s *Schema) url.Values {
	v := url.Values{}
	for _, f := range q.Filters {
		key := f.Field
		if f.Op != OpEq {
			key += "__" + string(f.Op)
		}
		field, _ := s.Field(f.Field)
		v.Add(key, FormatValue(field.Type, f.Value))
	}
	for _, f := range q.Custom {
		key := customPrefix + f.Field
		if f.Op != OpEq {
			key += "__" + string(f.Op)
		}
		v.Add(key, FormatValue(String, f.Value))
	}
	v.Set(argLimit, strconv.Itoa(q.Limit))
	v.Set(argOffset, strconv.Itoa(q.Offset))
	if len(q.OrderBy) > 0 {
		items := make([]string, len(q.OrderBy))
		for i, o := range q.OrderBy {
			items[i] = o.Field
			if o.Desc {
				items[i] = "-" + o.Field
			}
		}
		v.Set(argOrderBy, strings.Join(items, ","))
	}
	if len(q.Fields) > 0 || len(q.CustomFields) > 0 {
		names := slices.Clone(q.Fields)
		for _, p := range q.CustomFields {
			names = append(names, customPrefix+p)
		}
		v.Set(argFields, strings.Join(names, ","))
	}
	if q.Format == XML {
		v.Set(argFormat, "xml")
	}
	if q.Microseconds {
		v.Set(argMicroseconds, "true")
	}
	return v
}

// FormatValue writes a filter value (of the Go type ParseValue returns for
// t, or a bool for isnull) in the form ParseValue reads.
func FormatValue(t Type, v any) string {
	switch v := v.(type) {
	case bool:
		if v {
			return "True"
		}
		return "False"
	case int64:
		return strconv.FormatInt(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case string:
		return v
	case time.Time:
		if t == Date {
			return v.UTC().Format(time.DateOnly)
		}
		return v.UTC().Format("2006-01-02T15:04:05.999999999Z")
	}
	return fmt.Sprint(v)
}

// Selected returns the fields a query returns, in answer order.
func (q Query) Selected(s *Schema) []Field {
	if len(q.Fields) == 0 {
		return s.fields
	}
	out := make([]Field, 0, len(q.Fields))
	for _, name := range q.Fields {
		if f, ok := s.Field(name); ok {
			out = append(out, f)
		}
	}
	return out
}
