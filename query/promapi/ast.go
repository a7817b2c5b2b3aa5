package promapi

import (
	"net/http"
	"strconv"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

// The parse_query answer is the expression tree as JSON, in the shape
// docs/querying/api.md of Prometheus documents (the one its UI's "explain"
// view reads): every node has a "type" and its own fields. Durations are
// milliseconds; duration arithmetic (rangeExpr and friends) is not
// rendered.

type astMatcher struct {
	Name  string `json:"name"`
	Type  string `json:"type"`
	Value string `json:"value"`
}

type astSelector struct {
	Type       string       `json:"type"`
	Name       string       `json:"name"`
	Range      *int64       `json:"range,omitempty"`
	Offset     int64        `json:"offset"`
	Matchers   []astMatcher `json:"matchers"`
	Timestamp  *int64       `json:"timestamp"`
	StartOrEnd *string      `json:"startOrEnd"`
}

type astAggregation struct {
	Type     string   `json:"type"`
	Op       string   `json:"op"`
	Expr     any      `json:"expr"`
	Param    any      `json:"param"`
	Grouping []string `json:"grouping"`
	Without  bool     `json:"without"`
}

type astMatching struct {
	Card    string   `json:"card"`
	Labels  []string `json:"labels"`
	On      bool     `json:"on"`
	Include []string `json:"include"`
}

type astBinary struct {
	Type     string       `json:"type"`
	Op       string       `json:"op"`
	LHS      any          `json:"lhs"`
	RHS      any          `json:"rhs"`
	Matching *astMatching `json:"matching"`
	Bool     bool         `json:"bool"`
}

type astFunc struct {
	Name       string             `json:"name"`
	ArgTypes   []parser.ValueType `json:"argTypes"`
	Variadic   int                `json:"variadic"`
	ReturnType parser.ValueType   `json:"returnType"`
}

type astCall struct {
	Type string  `json:"type"`
	Func astFunc `json:"func"`
	Args []any   `json:"args"`
}

type astSubquery struct {
	Type       string  `json:"type"`
	Expr       any     `json:"expr"`
	Range      int64   `json:"range"`
	Offset     int64   `json:"offset"`
	Step       int64   `json:"step"`
	Timestamp  *int64  `json:"timestamp"`
	StartOrEnd *string `json:"startOrEnd"`
}

type astLiteral struct {
	Type string `json:"type"`
	Val  string `json:"val"`
}

type astWrapper struct {
	Type string `json:"type"`
	Op   string `json:"op,omitempty"`
	Expr any    `json:"expr"`
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

func startOrEnd(t parser.ItemType) *string {
	if t == 0 {
		return nil
	}
	s := t.String()
	return &s
}

func astMatchers(ms []*labels.Matcher) []astMatcher {
	out := make([]astMatcher, 0, len(ms))
	for _, m := range ms {
		out = append(out, astMatcher{Name: m.Name, Type: m.Type.String(), Value: m.Value})
	}
	return out
}

func selector(typ string, vs *parser.VectorSelector) *astSelector {
	return &astSelector{
		Type:       typ,
		Name:       vs.Name,
		Offset:     vs.OriginalOffset.Milliseconds(),
		Matchers:   astMatchers(vs.LabelMatchers),
		Timestamp:  vs.Timestamp,
		StartOrEnd: startOrEnd(vs.StartOrEnd),
	}
}

// translateExpr renders an expression tree; unknown node types render as
// nil rather than failing the request.
func translateExpr(e parser.Expr) any {
	switch n := e.(type) {
	case nil:
		return nil
	case *parser.AggregateExpr:
		return astAggregation{Type: "aggregation", Op: n.Op.String(), Expr: translateExpr(n.Expr), Param: translateExpr(n.Param),
			Grouping: nonNil(n.Grouping), Without: n.Without}
	case *parser.BinaryExpr:
		b := astBinary{Type: "binaryExpr", Op: n.Op.String(), LHS: translateExpr(n.LHS), RHS: translateExpr(n.RHS), Bool: n.ReturnBool}
		if m := n.VectorMatching; m != nil {
			b.Matching = &astMatching{Card: m.Card.String(), Labels: nonNil(m.MatchingLabels), On: m.On, Include: nonNil(m.Include)}
		}
		return b
	case *parser.Call:
		c := astCall{Type: "call", Args: []any{}, Func: astFunc{
			Name: n.Func.Name, ArgTypes: n.Func.ArgTypes, Variadic: n.Func.Variadic, ReturnType: n.Func.ReturnType,
		}}
		for _, a := range n.Args {
			c.Args = append(c.Args, translateExpr(a))
		}
		return c
	case *parser.MatrixSelector:
		vs, ok := n.VectorSelector.(*parser.VectorSelector)
		if !ok {
			return nil
		}
		s := selector("matrixSelector", vs)
		r := n.Range.Milliseconds()
		s.Range = &r
		return s
	case *parser.SubqueryExpr:
		return astSubquery{Type: "subquery", Expr: translateExpr(n.Expr), Range: n.Range.Milliseconds(),
			Offset: n.OriginalOffset.Milliseconds(), Step: n.Step.Milliseconds(), Timestamp: n.Timestamp, StartOrEnd: startOrEnd(n.StartOrEnd)}
	case *parser.NumberLiteral:
		return astLiteral{Type: "numberLiteral", Val: strconv.FormatFloat(n.Val, 'f', -1, 64)}
	case *parser.StringLiteral:
		return astLiteral{Type: "stringLiteral", Val: n.Val}
	case *parser.ParenExpr:
		return astWrapper{Type: "parenExpr", Expr: translateExpr(n.Expr)}
	case *parser.UnaryExpr:
		return astWrapper{Type: "unaryExpr", Op: n.Op.String(), Expr: translateExpr(n.Expr)}
	case *parser.VectorSelector:
		return selector("vectorSelector", n)
	case *parser.StepInvariantExpr:
		return translateExpr(n.Expr)
	}
	return nil
}

func (a *API) parseQuery(r *http.Request) result {
	expr, err := a.parser.ParseExpr(r.FormValue("query"))
	if err != nil {
		return fail(invalidParam("query", err))
	}
	return result{data: translateExpr(expr)}
}
