package chstore

// Reads of whole rows of the areas whose rows are written (master data and
// the records of the record API's actions): by id, or by the values of
// some of their stored fields.

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/takt/takt/internal/record"
)

// FoundRow is a live row with its id and audit fields.
type FoundRow struct {
	ID    uint64
	Row   Row
	Audit Audit
}

// FindRows returns up to limit live rows of the area called area whose
// stored fields equal match (field name to Row value), oldest id first.
// Field names must be stored fields of the area; values are bound, never
// written into the statement.
func (s *Store) FindRows(ctx context.Context, area string, match Row, limit int) ([]FoundRow, error) {
	a, err := s.rowArea(area)
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(match))
	for k := range match {
		names = append(names, k)
	}
	slices.Sort(names)
	conds := make([]string, 0, len(names))
	args := make([]any, 0, len(names))
	for _, k := range names {
		f, ok := a.Field(k)
		if !ok || !f.Stored() {
			return nil, fmt.Errorf("find %s: %q is not a stored field", a.Name, k)
		}
		conds = append(conds, "`"+f.Name+"` = ?")
		args = append(args, columnValue(match[k]))
	}
	if len(conds) == 0 {
		conds = append(conds, "1")
	}
	out, err := s.rowsWhere(ctx, a, strings.Join(conds, " AND "), args, limit)
	if err != nil {
		return nil, fmt.Errorf("find %s: %w", a.Name, err)
	}
	return out, nil
}

// columnValue converts a Row value to what its column is bound with.
func columnValue(v any) any {
	switch x := v.(type) {
	case bool:
		return b2u(x)
	case time.Time:
		return x.UTC()
	}
	return v
}

// rowsWhere reads up to limit live rows of a matching cond (a fixed
// fragment with ? placeholders for args), by id.
func (s *Store) rowsWhere(ctx context.Context, a *record.Area, cond string, args []any, limit int) ([]FoundRow, error) {
	cols := a.Columns()
	var b strings.Builder
	b.WriteString("SELECT id, ")
	for _, c := range cols {
		switch c.Kind {
		case record.Enum:
			b.WriteString("toString(`" + c.Name + "`), ")
		case record.Time:
			// As seconds: a zero DateTime reads the same on every server
			// version (18.16 prints it 0000-00-00, current 1970-01-01).
			b.WriteString("toUInt32(`" + c.Name + "`), ")
		default:
			b.WriteString("`" + c.Name + "`, ")
		}
	}
	b.WriteString("toUInt32(created), toUInt32(lastupdated), createdby, lastupdatedby, version FROM (SELECT * FROM " +
		a.Table + " FINAL) WHERE deleted = 0 AND " + cond + " ORDER BY id LIMIT ?")
	rows, err := s.conn.Query(ctx, b.String(), append(slices.Clone(args), limit)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []FoundRow
	for rows.Next() {
		var id uint64
		dest := make([]any, 0, len(cols)+6)
		dest = append(dest, &id)
		for _, c := range cols {
			switch c.Kind {
			case record.Uint:
				dest = append(dest, new(uint64))
			case record.Float:
				dest = append(dest, new(float64))
			case record.Bool:
				dest = append(dest, new(uint8))
			case record.Uints:
				dest = append(dest, new([]uint64))
			case record.Strings:
				dest = append(dest, new([]string))
			case record.Time:
				dest = append(dest, new(uint32))
			default:
				dest = append(dest, new(string))
			}
		}
		var created, updated uint32
		var au Audit
		dest = append(dest, &created, &updated, &au.CreatedBy, &au.LastUpdatedBy, &au.Version)
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("scan %s: %w", a.Name, err)
		}
		r := Row{}
		for i, c := range cols {
			switch d := dest[i+1].(type) {
			case *uint64:
				r[c.Name] = *d
			case *string:
				r[c.Name] = *d
			case *float64:
				r[c.Name] = *d
			case *uint8:
				r[c.Name] = *d != 0
			case *[]uint64:
				r[c.Name] = *d
			case *[]string:
				r[c.Name] = *d
			case *uint32:
				r[c.Name] = time.Unix(int64(*d), 0).UTC()
			}
		}
		au.Created, au.LastUpdated = time.Unix(int64(created), 0).UTC(), time.Unix(int64(updated), 0).UTC()
		out = append(out, FoundRow{ID: id, Row: r, Audit: au})
	}
	return out, rows.Err()
}
