package promapi

import (
	"fmt"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
)

// maxSubquerySteps bounds the steps one subquery may evaluate, the
// subquery counterpart of maxPointsPerSeries. The PromQL engine allocates
// two int64 per subquery step for its statistics before it evaluates
// anything and before max_samples can stop it: `x[1y:1ms]` asked for
// 500 GB and killed the process ("fatal error: runtime: out of memory",
// which no recover catches). A million steps is 16 MB.
const maxSubquerySteps = 1_000_000

// checkSubquerySteps refuses a query whose subqueries would evaluate more
// than maxSubquerySteps steps each. span is the time the query itself
// covers (end - start of a range query, 0 for an instant query): a
// subquery is evaluated over that span plus its own range, and a nested
// one over its parent's window plus its own range. A query that does not
// parse passes: the engine reports the parse error itself.
func checkSubquerySteps(p parser.Parser, query string, span time.Duration) error {
	expr, err := p.ParseExpr(query)
	if err != nil {
		return nil
	}
	var tooMany error
	parser.Inspect(expr, func(node parser.Node, path []parser.Node) error {
		sq, ok := node.(*parser.SubqueryExpr)
		if !ok || tooMany != nil {
			return nil
		}
		window := span
		for _, anc := range path {
			if outer, ok := anc.(*parser.SubqueryExpr); ok && outer != sq {
				window += outer.Range
			}
		}
		window += sq.Range
		step := sq.Step
		if step <= 0 {
			step = DefaultSubqueryInterval
		}
		if steps := int64(window/step) + 1; steps > maxSubquerySteps {
			tooMany = fmt.Errorf("subquery %s would evaluate %d steps, more than the limit of %d; use a larger subquery step or a shorter range",
				fmt.Sprintf("[%s:%s]", model.Duration(sq.Range), model.Duration(step)), steps, maxSubquerySteps)
		}
		return nil
	})
	return tooMany
}
