package record

import "github.com/takt/takt/internal/l2l"

// Clock sessions: who worked on which line when. Users clock in and out
// through actions of the users area; the sessions are an area of their
// own.

// clockActions are the users area's actions.
var clockActions = []Action{
	{Name: "clock_in", Methods: []string{"POST"}, PathArg: "username", Scope: scopeWrite, Returns: "clocksessions", List: true,
		Doc: "Clocks the user in on a line now; with start and end, records a session that already happened. A user" +
			" already clocked in on the line stays in that session.",
		Args: []Arg{
			{Name: "linecode", Type: ArgText, Required: true, Doc: "The line's code."},
			{Name: "start", Type: ArgTime, Doc: "When a past session began (give end too)."},
			{Name: "end", Type: ArgTime, Doc: "When a past session ended; after start."},
		}},
	{Name: "clock_out", Methods: []string{"POST"}, PathArg: "username", Scope: scopeWrite, Returns: "clocksessions", List: true,
		Doc: "Clocks the user out of the line now (or at end): ends the open session.",
		Args: []Arg{
			{Name: "linecode", Type: ArgText, Required: true, Doc: "The line's code."},
			{Name: "end", Type: ArgTime, Doc: "When the session ended (default: now); after it began."},
		}},
}

var clockSessionArea = &Area{
	Name: "clocksessions", Record: "ClockSession", Table: "clocksessions", Versioned: true,
	Doc:  "Sessions of users on lines, from users/clock_in to users/clock_out.",
	Site: SiteField, Writes: WriteActions,
	Fields: audited(
		idField(),
		Field{Name: "site", Kind: Uint, Flags: Read},
		Field{Name: "line", Kind: Uint, Flags: Read, Ref: "lines"},
		Field{Name: "linecode", Kind: String, Flags: Read, Doc: "The line's code when the user clocked in."},
		Field{Name: "user", Kind: Uint, Flags: Read, Ref: "users"},
		Field{Name: "username", Kind: String, Flags: Read},
		Field{Name: "start", Kind: Time, Flags: Read},
		Field{Name: "end", Kind: Time, Nullable: true, Flags: Read, Doc: "null while the user is clocked in."},
		Field{Name: "open", Type: l2l.Bool, Expr: "toUInt8(toUInt32(end) = 0)", Flags: Read, Doc: "The user is clocked in."},
		Field{Name: "hours", Type: l2l.Float, Nullable: true,
			Expr: "if(toUInt32(end) = 0, NULL, toNullable((toInt64(toUInt32(end)) - toInt64(toUInt32(start))) / 3600))", Flags: Read,
			Doc: "The session's length; null while open."},
		Field{Name: "active", Kind: Bool, Flags: Read, Default: true, Doc: "False for a retired record."},
	),
}
