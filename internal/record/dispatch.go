package record

import "github.com/takt/takt/internal/l2l"

// Dispatches: Leading2Lean's record of an event on a machine that needs
// someone (a breakdown, a changeover), by dispatch type. A dispatch whose
// type means downtime makes its machine's production period down from
// reported to completed: the record API sends the dispatch's down window
// to the processor, which owns the machine's periods (queryapi/actions_dispatch.go).

var dispatchTypeArea = &Area{
	Name: "dispatchtypes", Record: "DispatchType", Table: "dispatchtypes", Versioned: true,
	Doc:  "Kinds of dispatches.",
	Site: SiteField, Writes: WriteRows, Scope: scopeWrite,
	Unique: []Unique{uniqueCode},
	Fields: audited(
		idField(),
		siteField(),
		codeField(),
		descriptionField(),
		Field{Name: "downtime", Kind: Bool, Flags: Read | Write,
			Doc: "A dispatch of this type means its machine is down: the machine's production periods are down from the" +
				" dispatch's reported time to its completed time, with the dispatch type in their dispatchtype field."},
		activeField(),
	),
}

// dispatchStatuses are the states of a dispatch.
var dispatchStatuses = []string{"open", "closed"}

var dispatchArea = &Area{
	Name: "dispatches", Record: "Dispatch", Table: "dispatches", Versioned: true,
	Doc: "Events on machines that need someone, by dispatch type. Written by the actions open, close and add; a" +
		" dispatch of a downtime type makes its machine's production periods down from reported to completed.",
	Site: SiteField, Writes: WriteActions,
	Fields: audited(
		idField(),
		Field{Name: "site", Kind: Uint, Flags: Read},
		Field{Name: "dispatchnumber", Kind: Uint, Flags: Read, Doc: "The dispatch's number: unique."},
		Field{Name: "machine", Kind: Uint, Flags: Read, Ref: "machines"},
		Field{Name: "machinecode", Kind: String, Flags: Read, Doc: "The machine's code when the dispatch was opened."},
		Field{Name: "line", Kind: Uint, Nullable: true, Flags: Read, Ref: "lines", Doc: "The machine's line."},
		Field{Name: "dispatchtype", Kind: Uint, Flags: Read, Ref: "dispatchtypes"},
		Field{Name: "dispatchtypecode", Kind: String, Flags: Read, Doc: "The dispatch type's code when the dispatch was opened."},
		Field{Name: "description", Kind: String, Flags: Read},
		Field{Name: "reported", Kind: Time, Flags: Read, Doc: "When the event began."},
		Field{Name: "completed", Kind: Time, Nullable: true, Flags: Read, Doc: "When it ended; null while open."},
		Field{Name: "status", Kind: Enum, Flags: Read, Options: dispatchStatuses},
		Field{Name: "open", Type: l2l.Bool, Expr: "toUInt8(toUInt32(completed) = 0)", Flags: Read,
			Doc: "True while the dispatch is open (not completed)."},
		Field{Name: "downtime", Kind: Bool, Flags: Read,
			Doc: "Its type meant downtime when it was opened: its machine's production periods are down from reported to" +
				" completed (when the machine is a location, with an externalid)."},
		Field{Name: "active", Kind: Bool, Flags: Read, Default: true, Doc: "False for a retired record."},
	),
	Actions: []Action{
		{Name: "open", Methods: []string{"POST"}, Scope: scopeWrite, Returns: "dispatches",
			Doc: "Opens a dispatch on a machine, reported now (or at reported).",
			Args: []Arg{
				{Name: "dispatchtype", Type: ArgID, Required: true, Doc: "The dispatch type's id."},
				{Name: "machine", Type: ArgID, Required: true, Doc: "The machine's id."},
				{Name: "description", Type: ArgText},
				{Name: "reported", Type: ArgTime, Doc: "When it began (default: now)."},
			}},
		{Name: "close", Methods: []string{"POST"}, PathArg: "id", Scope: scopeWrite, Returns: "dispatches",
			Doc:  "Completes an open dispatch now (or at completed). Closing a closed dispatch changes nothing.",
			Args: []Arg{{Name: "completed", Type: ArgTime, Doc: "When it ended (default: now); not before reported."}}},
		{Name: "add", Methods: []string{"POST"}, Scope: scopeWrite, Returns: "dispatches",
			Doc: "Records a dispatch that already happened, by codes. Its down window changes the machine's production" +
				" periods when it lies within the lateness window (an hour behind the machine's newest part); an older" +
				" one is recorded but leaves the periods, which are final there, as they are.",
			Args: []Arg{
				{Name: "dispatchtypecode", Type: ArgText, Required: true, Doc: "The dispatch type's code."},
				{Name: "machinecode", Type: ArgText, Required: true, Doc: "The machine's code."},
				{Name: "description", Type: ArgText},
				{Name: "reported", Type: ArgTime, Required: true, Doc: "When it began."},
				{Name: "completed", Type: ArgTime, Doc: "When it ended (default: now); after reported."},
			}},
	},
}
