package analytics_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
)

// recorder sits between a Store and its connection (Store.WrapConn) and records every
// statement the store sends as the SQL text clickhouse-go makes of it, so that
// TestCurrentClickHouse can replay it on another ClickHouse. It sends that text, its
// arguments bound as literals, in place of the call: what the store reads back is then the
// answer to the recorded text, and the store's tests check the binding.
//
// Writes (DDL, INSERT … SELECT, batch inserts) are steps in the order they were sent; a batch
// insert is recorded as its INSERT with the rows it sent, as VALUES. Reads wait for the next
// checkpoint, where 18.16 answers them again on the state the writes made so far: both
// servers answer them on the same rows.
type recorder struct {
	driver.Conn
	tz *time.Location // the server's: clickhouse-go binds times with it

	mu      sync.Mutex
	direct  bool // calls go through as they are, unrecorded
	label   string
	steps   []step
	pending []step // reads since the last checkpoint
	err     error  // the first call that could not be recorded
}

// step is one recorded statement.
type step struct {
	SQL  string  `json:"sql"`
	Read bool    `json:"read"`
	by   string  // who sent it: the store's function, or what the test does
	want *answer // a read's answer on 18.16 at its checkpoint
	// inOrder says the order of a read's rows is part of its answer: it orders them, or the
	// server lists them in an order of its own (columns in system.columns). The other
	// reads' rows come in any order.
	inOrder bool
}

// answer is a read's answer, made comparable across server versions: the columns' types, and
// each row as the JSON of its values in canonical form (canonicalGo, canonicalJSON), sorted
// unless the order is part of the answer.
type answer struct {
	types []string
	rows  []string
}

// as runs f with the statements it sends labelled what (instead of the store's function).
func (r *recorder) as(what string, f func()) {
	r.mu.Lock()
	r.label = what
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.label = ""
		r.mu.Unlock()
	}()
	f()
}

// passThrough runs f with the calls going to ClickHouse as the store made them, unrecorded.
func (r *recorder) passThrough(f func()) {
	r.mu.Lock()
	r.direct = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.direct = false
		r.mu.Unlock()
	}()
	f()
}

func (r *recorder) isDirect() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.direct
}

func (r *recorder) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.err == nil {
		r.err = err
	}
}

func (r *recorder) record(st step) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.label != "" {
		st.by = r.label
	}
	if st.Read {
		r.pending = append(r.pending, st)
	} else {
		r.steps = append(r.steps, st)
	}
}

func (r *recorder) Query(ctx context.Context, q string, args ...any) (driver.Rows, error) {
	if r.isDirect() {
		return r.Conn.Query(ctx, q, args...)
	}
	sql, err := bind(r.tz, q, args)
	if err != nil {
		r.fail(err)
		return nil, err
	}
	r.record(step{SQL: sql, Read: true, by: caller(), inOrder: orders(sql)})
	return r.Conn.Query(ctx, sql)
}

func (r *recorder) QueryRow(ctx context.Context, q string, args ...any) driver.Row {
	if r.isDirect() {
		return r.Conn.QueryRow(ctx, q, args...)
	}
	sql, err := bind(r.tz, q, args)
	if err != nil {
		r.fail(err)
		return r.Conn.QueryRow(ctx, q, args...)
	}
	r.record(step{SQL: sql, Read: true, by: caller(), inOrder: orders(sql)})
	return r.Conn.QueryRow(ctx, sql)
}

func (r *recorder) Exec(ctx context.Context, q string, args ...any) error {
	if r.isDirect() {
		return r.Conn.Exec(ctx, q, args...)
	}
	sql, err := bind(r.tz, q, args)
	if err != nil {
		r.fail(err)
		return err
	}
	if err := r.Conn.Exec(ctx, sql); err != nil {
		return err
	}
	r.record(step{SQL: sql, by: caller()})
	return nil
}

func (r *recorder) PrepareBatch(ctx context.Context, q string, opts ...driver.PrepareBatchOption) (driver.Batch, error) {
	b, err := r.Conn.PrepareBatch(ctx, q, opts...)
	if err != nil || r.isDirect() {
		return b, err
	}
	return &batch{Batch: b, r: r, query: q, by: caller()}, nil
}

func (r *recorder) Select(ctx context.Context, dest any, q string, args ...any) error {
	r.fail(fmt.Errorf("Select(%q) is not recorded: teach the recorder", q))
	return r.Conn.Select(ctx, dest, q, args...)
}

func (r *recorder) AsyncInsert(_ context.Context, q string, _ bool, _ ...any) error {
	err := fmt.Errorf("AsyncInsert(%q) is not recorded: teach the recorder", q)
	r.fail(err)
	return err
}

// checkpoint asks 18.16 the reads recorded since the last checkpoint (each text once), and
// places them after the writes recorded so far.
func (r *recorder) checkpoint(ctx context.Context) error {
	r.mu.Lock()
	pending := r.pending
	r.pending = nil
	r.mu.Unlock()
	seen := map[string]bool{}
	for _, st := range pending {
		if seen[st.SQL] {
			continue
		}
		seen[st.SQL] = true
		a, err := ask(ctx, r.Conn, r.tz, st)
		if err != nil {
			return fmt.Errorf("%s, asked again on 18.16: %w\n%s", st.by, err, st.SQL)
		}
		st.want = &a
		r.steps = append(r.steps, st)
	}
	return nil
}

// batch records the rows of a batch insert, and the insert once sent.
type batch struct {
	driver.Batch
	r         *recorder
	query, by string
	columns   [][]any
}

func (b *batch) add(i int, v any) {
	for len(b.columns) <= i {
		b.columns = append(b.columns, nil)
	}
	b.columns[i] = append(b.columns[i], v)
}

func (b *batch) Append(v ...any) error {
	if err := b.Batch.Append(v...); err != nil {
		return err
	}
	for i, x := range v {
		b.add(i, x)
	}
	return nil
}

func (b *batch) AppendStruct(v any) error {
	b.r.fail(fmt.Errorf("AppendStruct in %q is not recorded: teach the recorder", b.query))
	return b.Batch.AppendStruct(v)
}

func (b *batch) Column(i int) driver.BatchColumn { return &batchColumn{b.Batch.Column(i), b, i} }

func (b *batch) Send() error {
	if err := b.Batch.Send(); err != nil {
		return err
	}
	sql, err := b.values()
	if err != nil {
		b.r.fail(err)
		return nil
	}
	b.r.record(step{SQL: sql, by: b.by})
	return nil
}

// values is the insert with its rows as VALUES.
func (b *batch) values() (string, error) {
	if len(b.columns) == 0 {
		return "", fmt.Errorf("%q sent no rows", b.query)
	}
	n := len(b.columns[0])
	var sb strings.Builder
	sb.WriteString(b.query)
	sb.WriteString(" VALUES ")
	for row := range n {
		if row > 0 {
			sb.WriteString(", ")
		}
		sb.WriteByte('(')
		for i, col := range b.columns {
			if len(col) != n {
				return "", fmt.Errorf("%q: column %d has %d values, column 0 %d", b.query, i, len(col), n)
			}
			if i > 0 {
				sb.WriteString(", ")
			}
			v, err := valuesLiteral(b.r.tz, col[row])
			if err != nil {
				return "", fmt.Errorf("%q, column %d: %w", b.query, i, err)
			}
			sb.WriteString(v)
		}
		sb.WriteByte(')')
	}
	return sb.String(), nil
}

type batchColumn struct {
	driver.BatchColumn
	b *batch
	i int
}

// Append appends a whole column (a slice of its values), as insertColumns does.
func (c *batchColumn) Append(v any) error {
	if err := c.BatchColumn.Append(v); err != nil {
		return err
	}
	s := reflect.ValueOf(v)
	if s.Kind() != reflect.Slice {
		c.b.r.fail(fmt.Errorf("column %d of %q appended a %T, not a slice", c.i, c.b.query, v))
		return nil
	}
	for j := range s.Len() {
		c.b.add(c.i, s.Index(j).Interface())
	}
	return nil
}

func (c *batchColumn) AppendRow(v any) error {
	if err := c.BatchColumn.AppendRow(v); err != nil {
		return err
	}
	c.b.add(c.i, v)
	return nil
}

// caller names the store's function that sent a statement: the first of the analytics
// package's own on the stack, past its helpers that every query goes through.
func caller() string {
	const pkg = "github.com/zenklav/zenklav/analytics."
	pcs := make([]uintptr, 32)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs)])
	for {
		f, more := frames.Next()
		name, ok := strings.CutPrefix(f.Function, pkg)
		if ok && !strings.HasSuffix(f.File, "_test.go") &&
			!slices.Contains([]string{"(*Store).query", "(*Store).queryByIDs", "(*Store).insertColumns"}, name) {
			return strings.TrimSuffix(name, ".func1")
		}
		if !more {
			return "test"
		}
	}
}

// bind binds args to q's ? placeholders as clickhouse-go binds them for the native protocol
// (bind.go's bindPositional and format, for the types the store passes): the text the
// server is sent. A type it does not know is an error, never a guess.
func bind(tz *time.Location, q string, args []any) (string, error) {
	if len(args) == 0 {
		return q, nil
	}
	var sb strings.Builder
	next := 0
	quote := byte(0) // the quote we are in: ', " or `
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case quote != 0:
			if c == '\\' && i+1 < len(q) {
				sb.WriteByte(c)
				i++
				c = q[i]
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"' || c == '`':
			quote = c
		case c == '-' && strings.HasPrefix(q[i:], "--"), c == '/' && strings.HasPrefix(q[i:], "/*"):
			return "", fmt.Errorf("the recorder binds no query with comments: %q", q)
		case c == '?':
			if next == len(args) {
				return "", fmt.Errorf("more placeholders than %d arguments in %q", len(args), q)
			}
			v, err := literal(tz, args[next])
			if err != nil {
				return "", fmt.Errorf("argument %d of %q: %w", next, q, err)
			}
			sb.WriteString(v)
			next++
			continue
		}
		sb.WriteByte(c)
	}
	if next != len(args) {
		return "", fmt.Errorf("%d arguments for %d placeholders in %q", len(args), next, q)
	}
	return sb.String(), nil
}

var quoter = strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\x00", `\0`)

func quoted(s string) string { return "'" + quoter.Replace(s) + "'" }

// literal is clickhouse-go's SQL literal of a bound argument (bind.go's formatValue).
func literal(tz *time.Location, v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "NULL", nil
	case string:
		return quoted(v), nil
	case time.Time:
		return timeLiteral(tz, v), nil
	case bool:
		if v {
			return "1", nil
		}
		return "0", nil
	case float64:
		return fmt.Sprintf("cast(%s, 'Float64')", strconv.FormatFloat(v, 'g', -1, 64)), nil
	case clickhouse.GroupSet:
		items, err := literals(tz, reflect.ValueOf(v.Value))
		return "(" + items + ")", err
	case []byte:
		return "", fmt.Errorf("a []byte: teach the recorder clickhouse-go's form of it")
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprint(v), nil
	case reflect.Slice, reflect.Array:
		items, err := literals(tz, rv)
		return "[" + items + "]", err
	}
	return "", fmt.Errorf("a %T: teach the recorder clickhouse-go's form of it", v)
}

func literals(tz *time.Location, list reflect.Value) (string, error) {
	items := make([]string, list.Len())
	for i := range items {
		var err error
		if items[i], err = literal(tz, list.Index(i).Interface()); err != nil {
			return "", err
		}
	}
	return strings.Join(items, ", "), nil
}

// timeLiteral is clickhouse-go's formatTime for a DateTime (seconds), with tz the server's.
func timeLiteral(tz *time.Location, t time.Time) string {
	switch loc := t.Location().String(); loc {
	case "Local", "":
		if t.Unix() == 0 {
			return "toDateTime(0)"
		}
		return fmt.Sprintf("toDateTime('%d')", t.Unix())
	case tz.String():
		return t.Format("toDateTime('2006-01-02 15:04:05')")
	default:
		return fmt.Sprintf("toDateTime('%s', '%s')", t.Format(time.DateTime), loc)
	}
}

// valuesLiteral is a batch's value as the VALUES format reads it into its column: times as
// text in the server's time zone (the columns are DateTime without a zone of their own).
func valuesLiteral(tz *time.Location, v any) (string, error) {
	switch v := v.(type) {
	case string:
		return quoted(v), nil
	case time.Time:
		return quoted(v.In(tz).Format(time.DateTime)), nil
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return fmt.Sprint(v), nil
	case reflect.Slice:
		items := make([]string, rv.Len())
		for i := range items {
			var err error
			if items[i], err = valuesLiteral(tz, rv.Index(i).Interface()); err != nil {
				return "", err
			}
		}
		return "[" + strings.Join(items, ", ") + "]", nil
	}
	return "", fmt.Errorf("a %T in a batch: teach the recorder its VALUES form", v)
}

// ask runs a read on 18.16 and returns its answer in canonical form.
func ask(ctx context.Context, conn driver.Conn, tz *time.Location, st step) (answer, error) {
	rows, err := conn.Query(ctx, st.SQL)
	if err != nil {
		return answer{}, err
	}
	defer rows.Close()
	var a answer
	cts := rows.ColumnTypes()
	for _, ct := range cts {
		a.types = append(a.types, ct.DatabaseTypeName())
	}
	for rows.Next() {
		dest := make([]any, len(cts))
		for i, ct := range cts {
			dest[i] = reflect.New(ct.ScanType()).Interface()
		}
		if err := rows.Scan(dest...); err != nil {
			return answer{}, err
		}
		row := make([]any, len(cts))
		for i := range dest {
			if row[i], err = canonicalGo(reflect.ValueOf(dest[i]).Elem(), a.types[i], tz); err != nil {
				return answer{}, err
			}
		}
		if err := a.add(row, st.SQL); err != nil {
			return answer{}, err
		}
	}
	if err := rows.Err(); err != nil {
		return answer{}, err
	}
	a.finish(st)
	return a, nil
}

// orders says whether a query orders its rows.
func orders(sql string) bool { return strings.Contains(strings.ToUpper(sql), "ORDER BY") }

// collects says whether a query's arrays are collected by groupArray in the order the server
// happens to read the rows (the store sorts what it reads, netQuantiles), so that their
// elements compare as multisets.
func collects(sql string) bool {
	return strings.Contains(sql, "groupArray") && !strings.Contains(sql, "arraySort(groupArray")
}

// add adds a row of canonical values.
func (a *answer) add(row []any, sql string) error {
	if collects(sql) {
		for i, v := range row {
			if list, ok := v.([]any); ok {
				slices.SortFunc(list, func(x, y any) int { return strings.Compare(fmt.Sprint(x), fmt.Sprint(y)) })
				row[i] = list
			}
		}
	}
	b, err := json.Marshal(row)
	if err != nil {
		return err
	}
	a.rows = append(a.rows, string(b))
	return nil
}

// finish sorts the rows of a read whose rows come in any order.
func (a *answer) finish(st step) {
	if !st.inOrder {
		slices.Sort(a.rows)
	}
}

// The canonical form of a value is what both versions' answers agree on when the values are
// equal: numbers and strings as strings (JSON quotes 64-bit integers on 18.16 and not on
// current releases), floats in Go's shortest form, dates and times as ClickHouse prints them
// in the server's time zone, arrays as arrays, NULL as null.

// inner is the type of an Array's elements, or of a Nullable's or LowCardinality's value.
func inner(typ string) string {
	for _, wrap := range []string{"Array(", "Nullable(", "LowCardinality("} {
		if s, ok := strings.CutPrefix(typ, wrap); ok {
			return strings.TrimSuffix(s, ")")
		}
	}
	return typ
}

func canonicalGo(v reflect.Value, typ string, tz *time.Location) (any, error) {
	if t, ok := v.Interface().(time.Time); ok {
		if typ == "Date" || typ == "Date32" {
			return t.Format(time.DateOnly), nil
		}
		return t.In(tz).Format(time.DateTime), nil
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil, nil
		}
		return canonicalGo(v.Elem(), inner(typ), tz)
	case reflect.String:
		return v.String(), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(v.Int(), 10), nil
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return strconv.FormatUint(v.Uint(), 10), nil
	case reflect.Float32, reflect.Float64:
		return strconv.FormatFloat(v.Float(), 'g', -1, v.Type().Bits()), nil
	case reflect.Bool:
		return strconv.FormatBool(v.Bool()), nil
	case reflect.Slice, reflect.Array:
		out := make([]any, v.Len())
		for i := range out {
			var err error
			if out[i], err = canonicalGo(v.Index(i), inner(typ), tz); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("a %s of type %s: teach the test its canonical form", v.Type(), typ)
}

// canonicalJSON is the canonical form of a value of a JSONCompact answer, decoded with
// UseNumber.
func canonicalJSON(v any, typ string) (any, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case json.Number:
		if base := strings.TrimPrefix(inner(typ), "Nullable("); strings.HasPrefix(base, "Float") {
			f, err := v.Float64()
			if err != nil {
				return nil, err
			}
			bits := 64
			if strings.HasPrefix(base, "Float32") {
				bits = 32
			}
			return strconv.FormatFloat(f, 'g', -1, bits), nil
		}
		return v.String(), nil
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case []any:
		out := make([]any, len(v))
		for i := range v {
			var err error
			if out[i], err = canonicalJSON(v[i], inner(typ)); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	return nil, fmt.Errorf("a %T of type %s in JSON: teach the test its canonical form", v, typ)
}
