package recommend

import "math"

func logf(x float64) float64    { return math.Log(x) }
func powf(x, y float64) float64 { return math.Pow(x, y) }
