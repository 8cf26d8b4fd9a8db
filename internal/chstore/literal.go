package chstore

// The text of a recorded statement with its values written in: what
// clickhouse-go sends for a statement with ? placeholders (it binds
// client-side, as SQL literals), and, for a batch, an INSERT ... VALUES of
// its rows. The literals follow clickhouse-go's rules for the types the
// Store binds; any other type is an error rather than a guess.

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/google/uuid"
)

// SQL returns st as one statement without placeholders. serverTZ is the
// server's time zone (SELECT timezone()): clickhouse-go writes a time in
// that zone without naming it.
func (st Statement) SQL(serverTZ string) (string, error) {
	if st.Kind == StatementInsert {
		return insertValuesSQL(st.Query, st.Rows, st.Types, serverTZ)
	}
	return bindSQL(st.Query, st.Args, serverTZ)
}

// insertValuesSQL writes an insert's rows as VALUES. An Enum column's
// values may be codes (the native protocol sends codes); VALUES takes the
// names.
func insertValuesSQL(query string, rows [][]any, types []string, tz string) (string, error) {
	if len(rows) == 0 {
		return "", errors.New("insert without rows")
	}
	names := make([]map[int64]string, len(types))
	for i, t := range types {
		if strings.HasPrefix(t, "Enum") {
			names[i] = map[int64]string{}
			for _, m := range enumMember.FindAllStringSubmatch(t, -1) {
				n, _ := strconv.ParseInt(m[2], 10, 64)
				names[i][n] = m[1]
			}
		}
	}
	var b strings.Builder
	b.WriteString(query)
	b.WriteString(" VALUES ")
	for i, row := range rows {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteByte('(')
		for j, v := range row {
			if j > 0 {
				b.WriteString(", ")
			}
			if j < len(names) && names[j] != nil {
				if code, ok := enumCode(v); ok {
					name, ok := names[j][code]
					if !ok {
						return "", fmt.Errorf("row %d column %d: %d is no value of %s", i, j, code, types[j])
					}
					v = name
				}
			}
			lit, err := literal(v, tz)
			if err != nil {
				return "", fmt.Errorf("row %d column %d: %w", i, j, err)
			}
			b.WriteString(lit)
		}
		b.WriteByte(')')
	}
	return b.String(), nil
}

// enumMember is one 'name' = code of an Enum type (names in Takt's
// schemas hold no quotes).
var enumMember = regexp.MustCompile(`'([^'\\]*)' = (-?\d+)`)

// enumCode returns v as an integer when it is one.
func enumCode(v any) (int64, bool) {
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return rv.Int(), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return int64(rv.Uint()), true
	}
	return 0, false
}

// bindSQL replaces each ? outside quotes and comments with the next
// argument's literal.
func bindSQL(query string, args []any, tz string) (string, error) {
	var b strings.Builder
	n := 0
	for i := 0; i < len(query); i++ {
		c := query[i]
		switch {
		case c == '\'' || c == '`' || c == '"':
			j := closingQuote(query, i)
			b.WriteString(query[i:j])
			i = j - 1
		case c == '-' && strings.HasPrefix(query[i:], "--"):
			j := strings.IndexByte(query[i:], '\n')
			if j < 0 {
				j = len(query) - i
			}
			b.WriteString(query[i : i+j])
			i += j - 1
		case c == '/' && strings.HasPrefix(query[i:], "/*"):
			j := strings.Index(query[i:], "*/")
			if j < 0 {
				return "", errors.New("unterminated comment")
			}
			b.WriteString(query[i : i+j+2])
			i += j + 1
		case c == '?':
			if n == len(args) {
				return "", fmt.Errorf("placeholder %d has no argument", n+1)
			}
			lit, err := literal(args[n], tz)
			if err != nil {
				return "", fmt.Errorf("argument %d: %w", n+1, err)
			}
			b.WriteString(lit)
			n++
		default:
			b.WriteByte(c)
		}
	}
	if n != len(args) {
		return "", fmt.Errorf("%d arguments for %d placeholders", len(args), n)
	}
	return b.String(), nil
}

// closingQuote returns the index after the quote that closes the one at i
// (a backslash escapes the next byte).
func closingQuote(s string, i int) int {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case q:
			return j + 1
		}
	}
	return len(s)
}

var quoteReplacer = strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\x00", `\0`)

func quote(s string) string { return "'" + quoteReplacer.Replace(s) + "'" }

// literal writes v as clickhouse-go's client-side binding does.
func literal(v any, tz string) (string, error) {
	switch x := v.(type) {
	case nil:
		return "NULL", nil
	case string:
		return quote(x), nil
	case bool:
		if x {
			return "1", nil
		}
		return "0", nil
	case float64:
		return floatLiteral(x), nil
	case time.Time:
		return timeLiteral(x, tz), nil
	case uuid.UUID:
		return quote(x.String()), nil
	case clickhouse.GroupSet:
		s, err := literals(x.Value, tz)
		return "(" + s + ")", err
	case int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64:
		return fmt.Sprint(x), nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer:
		if rv.IsNil() {
			return "NULL", nil
		}
		return literal(rv.Elem().Interface(), tz)
	case reflect.Slice:
		vs := make([]any, rv.Len())
		for i := range vs {
			vs[i] = rv.Index(i).Interface()
		}
		s, err := literals(vs, tz)
		return "[" + s + "]", err
	}
	return "", fmt.Errorf("no literal for a value of type %T", v)
}

func literals(vs []any, tz string) (string, error) {
	out := make([]string, len(vs))
	for i, v := range vs {
		s, err := literal(v, tz)
		if err != nil {
			return "", err
		}
		out[i] = s
	}
	return strings.Join(out, ", "), nil
}

// floatLiteral casts, so that 1.0 stays a Float64 and not the integer 1.
func floatLiteral(f float64) string {
	switch {
	case math.IsNaN(f):
		return "cast('nan', 'Float64')"
	case math.IsInf(f, 1):
		return "cast('inf', 'Float64')"
	case math.IsInf(f, -1):
		return "cast('-inf', 'Float64')"
	}
	return "cast(" + strconv.FormatFloat(f, 'g', -1, 64) + ", 'Float64')"
}

// timeLiteral: a time in the local zone as Unix seconds, one in the
// server's zone as its wall clock, any other with its zone named.
func timeLiteral(t time.Time, tz string) string {
	switch loc := t.Location().String(); loc {
	case "Local", "":
		if t.Unix() == 0 {
			return "toDateTime(0)"
		}
		return fmt.Sprintf("toDateTime('%d')", t.Unix())
	case tz:
		return t.Format("toDateTime('2006-01-02 15:04:05')")
	default:
		return fmt.Sprintf("toDateTime('%s', %s)", t.Format("2006-01-02 15:04:05"), quote(loc))
	}
}
