package topology

import (
	"net/http"
)

// The Node Graph API data source (hamedkarbasi93-nodegraphapi-datasource)
// asks three things of a backend under its base URL: /api/health,
// /api/graph/fields (which columns nodes and edges have) and
// /api/graph/data (the rows). Grafana's Node Graph panel reads the column
// names: id, title, subTitle, mainStat, secondaryStat, arc__* (fractions
// summing to at most 1, drawn around a node) and detail__* (shown on
// click); edges need id, source and target.

// NodeGraphField describes one column.
type NodeGraphField struct {
	Name        string `json:"field_name"`
	Type        string `json:"type"`
	Color       string `json:"color,omitempty"`
	DisplayName string `json:"displayName,omitempty"`
}

// NodeGraphFields is the /api/graph/fields answer.
type NodeGraphFields struct {
	Edges []NodeGraphField `json:"edges_fields"`
	Nodes []NodeGraphField `json:"nodes_fields"`
}

// NodeGraphNode is a row of the nodes frame.
type NodeGraphNode struct {
	ID            string  `json:"id"`
	Title         string  `json:"title"`
	SubTitle      string  `json:"subTitle"`
	MainStat      float64 `json:"mainStat"`
	SecondaryStat float64 `json:"secondaryStat"`
	ArcSuccess    float64 `json:"arc__success"`
	ArcErrors     float64 `json:"arc__errors"`
	Kind          string  `json:"detail__kind"`
	Namespace     string  `json:"detail__namespace"`
	ErrorRate     float64 `json:"detail__errorRate"`
	P50           float64 `json:"detail__p50"`
	P99           float64 `json:"detail__p99"`
	TCPBytes      float64 `json:"detail__tcpBytesPerSecond"`
}

// NodeGraphEdge is a row of the edges frame.
type NodeGraphEdge struct {
	ID            string  `json:"id"`
	Source        string  `json:"source"`
	Target        string  `json:"target"`
	MainStat      float64 `json:"mainStat"`
	SecondaryStat float64 `json:"secondaryStat"`
	Protocol      string  `json:"detail__protocol"`
	MTLS          string  `json:"detail__mtls"`
	Reporter      string  `json:"detail__reporter"`
	P95           float64 `json:"detail__p95"`
	TCPBytes      float64 `json:"detail__tcpBytesPerSecond"`
}

// NodeGraphData is the /api/graph/data answer.
type NodeGraphData struct {
	Nodes []NodeGraphNode `json:"nodes"`
	Edges []NodeGraphEdge `json:"edges"`
}

func nodeGraphFields() NodeGraphFields {
	return NodeGraphFields{
		Nodes: []NodeGraphField{
			{Name: "id", Type: "string"},
			{Name: "title", Type: "string"},
			{Name: "subTitle", Type: "string"},
			{Name: "mainStat", Type: "number", DisplayName: "Requests/s"},
			{Name: "secondaryStat", Type: "number", DisplayName: "p95 latency (ms)"},
			{Name: "arc__success", Type: "number", Color: "green", DisplayName: "Success"},
			{Name: "arc__errors", Type: "number", Color: "red", DisplayName: "Errors"},
			{Name: "detail__kind", Type: "string", DisplayName: "Kind"},
			{Name: "detail__namespace", Type: "string", DisplayName: "Namespace"},
			{Name: "detail__errorRate", Type: "number", DisplayName: "Errors/s"},
			{Name: "detail__p50", Type: "number", DisplayName: "p50 latency (ms)"},
			{Name: "detail__p99", Type: "number", DisplayName: "p99 latency (ms)"},
			{Name: "detail__tcpBytesPerSecond", Type: "number", DisplayName: "TCP bytes/s"},
		},
		Edges: []NodeGraphField{
			{Name: "id", Type: "string"},
			{Name: "source", Type: "string"},
			{Name: "target", Type: "string"},
			{Name: "mainStat", Type: "number", DisplayName: "Requests/s"},
			{Name: "secondaryStat", Type: "number", DisplayName: "Error %"},
			{Name: "detail__protocol", Type: "string", DisplayName: "Protocol"},
			{Name: "detail__mtls", Type: "string", DisplayName: "mTLS"},
			{Name: "detail__reporter", Type: "string", DisplayName: "Reported by"},
			{Name: "detail__p95", Type: "number", DisplayName: "p95 latency (ms)"},
			{Name: "detail__tcpBytesPerSecond", Type: "number", DisplayName: "TCP bytes/s"},
		},
	}
}

// ToNodeGraph converts a graph to the Node Graph API data shape.
func ToNodeGraph(g *Graph) NodeGraphData {
	out := NodeGraphData{Nodes: make([]NodeGraphNode, 0, len(g.Nodes)), Edges: make([]NodeGraphEdge, 0, len(g.Edges))}
	for _, n := range g.Nodes {
		ng := NodeGraphNode{
			ID:        n.ID,
			Title:     n.Name,
			SubTitle:  n.Namespace,
			MainStat:  n.Inbound.RequestRate,
			Kind:      string(n.Kind),
			Namespace: n.Namespace,
			ErrorRate: n.Inbound.ErrorRate,
		}
		if n.Service != "" {
			ng.SubTitle = n.Service
		}
		if n.Inbound.LatencyMs != nil {
			ng.SecondaryStat = n.Inbound.LatencyMs.P95
			ng.P50, ng.P99 = n.Inbound.LatencyMs.P50, n.Inbound.LatencyMs.P99
		}
		if n.Inbound.TCP != nil {
			ng.TCPBytes = n.Inbound.TCP.SentBytes + n.Inbound.TCP.ReceivedBytes
		}
		if n.Inbound.RequestRate > 0 || (n.Inbound.TCP != nil && n.Inbound.TCP.ConnectionsOpened > 0) {
			ng.ArcErrors = n.Inbound.ErrorRatio
			ng.ArcSuccess = 1 - n.Inbound.ErrorRatio
		}
		out.Nodes = append(out.Nodes, ng)
	}
	for _, e := range g.Edges {
		ne := NodeGraphEdge{
			ID:            e.ID,
			Source:        e.Source,
			Target:        e.Target,
			MainStat:      e.RequestRate,
			SecondaryStat: 100 * e.ErrorRatio,
			Protocol:      e.Protocol,
			MTLS:          e.MTLS,
			Reporter:      e.Reporter,
		}
		if e.LatencyMs != nil {
			ne.P95 = e.LatencyMs.P95
		}
		if e.TCP != nil {
			ne.TCPBytes = e.TCP.SentBytes + e.TCP.ReceivedBytes
		}
		out.Edges = append(out.Edges, ne)
	}
	return out
}

func (a *API) serveHealth(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (a *API) serveFields(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, nodeGraphFields())
}

func (a *API) serveNodeGraph(w http.ResponseWriter, r *http.Request) {
	req, err := ParseRequest(r, a.opts.Now())
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	g, err := a.Graph(r.Context(), req)
	if err != nil {
		writeError(w, statusOf(err), err)
		return
	}
	writeJSON(w, http.StatusOK, ToNodeGraph(g))
}
