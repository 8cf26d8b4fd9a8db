// Package l2l is the record-area query language of Takt's query API, the
// dialect Leading2Lean's record-area API speaks: query arguments that filter
// (field=value, field__lt, __lte, __gt, __gte, __isnull), page (limit,
// offset), order (order_by=field or -field) and pick fields (fields=a,b) of
// one record area, and the answer envelope (success, data, error, errors,
// limit, offset) in JSON or in XML.
//
// The package is pure: it parses url.Values against the schema of an area
// (its fields and their types) into a typed Query, and renders records it is
// given. It knows nothing of SQL; internal/chstore turns a Query into a
// statement over whitelisted columns.
package l2l

import (
	"fmt"
	"regexp"
)

// Type is the type of a record field. It decides how a filter value is
// parsed and how a value is rendered.
type Type uint8

// Field types.
const (
	// Int is a whole number (rendered as a JSON number).
	Int Type = iota + 1
	// Float is a floating-point number.
	Float
	// String is text.
	String
	// Bool is a flag; filter values are True/False (also true/false, 1/0).
	Bool
	// DateTime is an instant shown in UTC as "YYYY-MM-DD HH:MM:SS.mmm".
	// Filter values are UTC ISO 8601 date-times or plain dates.
	DateTime
	// Date is a calendar day shown as "YYYY-MM-DD"; filter values are plain
	// ISO 8601 dates.
	Date
	// LocalDateTime is an instant shown in the record's own time zone as
	// ISO 8601 with its UTC offset ("2016-05-05T22:39:47.000+02:00"). It
	// filters and orders like DateTime: by the instant.
	LocalDateTime
	// Records is a list of records nested in an answer (a Nested value),
	// shown as a JSON array of objects or as <resource> elements. Only
	// answers built by the server have it: no schema field is of it.
	Records
)

var typeNames = map[Type]string{
	Int: "int", Float: "float", String: "string", Bool: "bool",
	DateTime: "datetime", Date: "date", LocalDateTime: "local datetime",
}

func (t Type) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	if t == Records {
		return "records"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Nested is the value of a Records field: records with one value per
// field, as in Response.
type Nested struct {
	Fields []Field
	Rows   [][]any
}

// Field is one field of a record area.
type Field struct {
	Name     string
	Type     Type
	Nullable bool
	// AfterRead: the server computes the field's values after it read the
	// page, so a request may show it and pick it (fields=) but neither
	// filter on it nor order by it.
	AfterRead bool
}

// Limits every area has unless its schema says otherwise.
const (
	// DefaultLimit is the page size when a request gives no limit.
	DefaultLimit = 100
	// MaxLimit is the largest limit a request may ask for; above it the
	// request fails.
	MaxLimit = 2000
)

// Schema is the set of fields of one record area, in display order. Build
// it with NewSchema; it is immutable and safe for concurrent use.
type Schema struct {
	area         string
	fields       []Field
	index        map[string]int
	defaultLimit int
	maxLimit     int
	defaultOrder []Order // nil: id ascending
	custom       bool    // custom__<name> properties allowed
	// aliases are other names of fields that filters and order_by accept
	// (line_id for line), by alias.
	aliases map[string]string
}

var fieldName = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// NewSchema returns the schema of the named area. Field names must be
// lower-case identifiers without "__" (the operator separator), unique, not
// one of the reserved argument names, and one of them must be "id" of type
// Int: records are addressed and paged by id.
func NewSchema(area string, fields ...Field) (*Schema, error) {
	s := &Schema{area: area, index: make(map[string]int, len(fields)),
		defaultLimit: DefaultLimit, maxLimit: MaxLimit}
	for i, f := range fields {
		switch {
		case !fieldName.MatchString(f.Name):
			return nil, fmt.Errorf("area %s: field name %q is not a lower-case identifier", area, f.Name)
		case reserved[f.Name]:
			return nil, fmt.Errorf("area %s: field name %q is a reserved argument", area, f.Name)
		case typeNames[f.Type] == "":
			return nil, fmt.Errorf("area %s: field %s: unknown type %d", area, f.Name, f.Type)
		}
		if _, dup := s.index[f.Name]; dup {
			return nil, fmt.Errorf("area %s: field %s defined twice", area, f.Name)
		}
		s.index[f.Name] = i
	}
	if i, ok := s.index["id"]; !ok || fields[i].Type != Int || fields[i].Nullable {
		return nil, fmt.Errorf("area %s: needs a non-null int field id", area)
	}
	s.fields = append([]Field(nil), fields...)
	return s, nil
}

// MustSchema is NewSchema for schemas fixed in code; it panics on error.
func MustSchema(area string, fields ...Field) *Schema {
	s, err := NewSchema(area, fields...)
	if err != nil {
		panic(err)
	}
	return s
}

// WithLimits returns a copy of s with other default and maximum limits.
func (s *Schema) WithLimits(defaultLimit, maxLimit int) (*Schema, error) {
	if maxLimit < 1 || defaultLimit < 1 || defaultLimit > maxLimit {
		return nil, fmt.Errorf("area %s: limits %d/%d: want 1 <= default <= max", s.area, defaultLimit, maxLimit)
	}
	c := *s
	c.defaultLimit, c.maxLimit = defaultLimit, maxLimit
	return &c, nil
}

// WithDefaultOrder returns a copy of s that orders requests without
// order_by by order (then id ascending, unless id is in it).
func (s *Schema) WithDefaultOrder(order ...Order) (*Schema, error) {
	for _, o := range order {
		f, ok := s.Field(o.Field)
		if !ok {
			return nil, fmt.Errorf("area %s: default order by unknown field %q", s.area, o.Field)
		}
		if f.AfterRead {
			return nil, fmt.Errorf("area %s: default order by %q, which is computed after the read", s.area, o.Field)
		}
	}
	c := *s
	c.defaultOrder = append([]Order(nil), order...)
	return &c, nil
}

// WithCustomProperties returns a copy of s whose records carry custom
// properties: filters custom__<name>[__op]=value and fields=custom__<name>
// are accepted (see Query.Custom).
func (s *Schema) WithCustomProperties() *Schema {
	c := *s
	c.custom = true
	return &c
}

// WithAliases returns a copy of s in which filters and order_by also name
// fields by other names: aliases maps each alias to the field it names
// (line_id to line, as Django-style clients write it). An alias must be a
// field name that is neither a field nor reserved. Answers always show the
// field's own name.
func (s *Schema) WithAliases(aliases map[string]string) (*Schema, error) {
	c := *s
	c.aliases = make(map[string]string, len(s.aliases)+len(aliases))
	for k, v := range s.aliases {
		c.aliases[k] = v
	}
	for alias, name := range aliases {
		_, isField := s.index[alias]
		switch {
		case !fieldName.MatchString(alias) || reserved[alias] || isField:
			return nil, fmt.Errorf("area %s: alias %q is not a free field name", s.area, alias)
		}
		if _, ok := s.index[name]; !ok {
			return nil, fmt.Errorf("area %s: alias %q of unknown field %q", s.area, alias, name)
		}
		c.aliases[alias] = name
	}
	return &c, nil
}

// Aliases returns the schema's aliases (alias to field name). The caller
// must not modify the map.
func (s *Schema) Aliases() map[string]string { return s.aliases }

// resolve returns the field called name or whose alias name is.
func (s *Schema) resolve(name string) (Field, bool) {
	if f, ok := s.Field(name); ok {
		return f, true
	}
	if real, ok := s.aliases[name]; ok {
		return s.Field(real)
	}
	return Field{}, false
}

// CustomProperties reports whether the area's records carry custom
// properties.
func (s *Schema) CustomProperties() bool { return s.custom }

// Area returns the name of the record area.
func (s *Schema) Area() string { return s.area }

// Fields returns the fields in display order. The caller must not modify
// the slice.
func (s *Schema) Fields() []Field { return s.fields }

// Field returns the named field.
func (s *Schema) Field(name string) (Field, bool) {
	i, ok := s.index[name]
	if !ok {
		return Field{}, false
	}
	return s.fields[i], true
}

// DefaultLimit returns the page size used when a request gives no limit.
func (s *Schema) DefaultLimit() int { return s.defaultLimit }

// MaxLimit returns the largest limit a request may ask for.
func (s *Schema) MaxLimit() int { return s.maxLimit }
