// Package deploy_test checks everything under deploy/ that a platform team
// applies: Kubernetes manifests against the Kubernetes API types (strict:
// an unknown field fails), Istio resources against Istio's API types, the
// Envoy bootstrap against Envoy's protos, the meshlens configuration in the
// ConfigMaps against meshlens's own loader, the Grafana provisioning and
// dashboards against what Grafana accepts, and the Kiali settings. The
// queries of the dashboards and Kiali run against a live meshlens in
// e2e/dashboards_test.go and e2e/kiali_test.go.
package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/prometheus/promql/parser"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	meshv1alpha1 "istio.io/api/mesh/v1alpha1"
	telemetryapi "istio.io/api/telemetry/v1alpha1"
	telemetryv1 "istio.io/client-go/pkg/apis/telemetry/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	"k8s.io/apimachinery/pkg/runtime"
	k8sjson "k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/client-go/kubernetes/scheme"
	sigsyaml "sigs.k8s.io/yaml"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	tracev3 "github.com/envoyproxy/go-control-plane/envoy/config/trace/v3"
	alsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/access_loggers/grpc/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"

	"github.com/meshlens/meshlens/server"
)

// The extension types a bootstrap's Any fields name must be linked in for
// protojson to resolve them.
var (
	_ = &alsv3.HttpGrpcAccessLogConfig{}
	_ = &metricsv3.MetricsServiceConfig{}
	_ = &tracev3.ZipkinConfig{}
	_ = &hcmv3.HttpConnectionManager{}
	_ = &routerv3.Router{}
	_ = &tcpproxyv3.TcpProxy{}
	_ = &upstreamhttpv3.HttpProtocolOptions{}
)

// meshlensPorts are the ports of README's Ports table, by Service port name.
var meshlensPorts = map[string]int32{
	"http-query":  8088,
	"grpc-ingest": 11800,
	"http-zipkin": 9411,
	"grpc-otlp":   4317,
	"http-otlp":   4318,
}

const (
	meshlensHost  = "meshlens.observability.svc.cluster.local"
	meshlensImage = "ghcr.io/meshlens/meshlens"
)

// ---------------------------------------------------------------- YAML

// splitYAML returns the non-empty documents of a multi-document YAML file.
func splitYAML(t *testing.T, path string) [][]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		if strings.TrimSpace(stripComments(cur.String())) != "" {
			docs = append(docs, bytes.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		if strings.TrimRight(sc.Text(), " ") == "---" {
			flush()
			continue
		}
		cur.WriteString(sc.Text() + "\n")
	}
	flush()
	return docs
}

func stripComments(s string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// strictYAML decodes YAML into v, failing on unknown fields.
func strictYAML(data []byte, v any) error {
	j, err := sigsyaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(j))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// strictProtoYAML decodes YAML into a proto message with protojson,
// failing on unknown fields.
func strictProtoYAML(data []byte, m proto.Message) error {
	j, err := sigsyaml.YAMLToJSON(data)
	if err != nil {
		return err
	}
	return protojson.UnmarshalOptions{DiscardUnknown: false}.Unmarshal(j, m)
}

// ---------------------------------------------------------------- Kubernetes

// k8sDecoder decodes with the Kubernetes API types, strictly: an unknown
// or duplicated field is an error, not a silently dropped setting.
var k8sDecoder = k8sjson.NewSerializerWithOptions(k8sjson.DefaultMetaFactory, scheme.Scheme, scheme.Scheme,
	k8sjson.SerializerOptions{Yaml: true, Strict: true})

func decodeK8s(doc []byte) (runtime.Object, error) {
	obj, _, err := k8sDecoder.Decode(doc, nil, nil)
	return obj, err
}

// kustomization is the part of kustomize's Kustomization these manifests
// use; anything else in a kustomization.yaml fails the test so that it is
// added here (and checked) first.
type kustomization struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Namespace  string `json:"namespace"`
	Labels     []struct {
		Pairs            map[string]string `json:"pairs"`
		IncludeSelectors bool              `json:"includeSelectors"`
	} `json:"labels"`
	Resources []string `json:"resources"`
	Patches   []struct {
		Path string `json:"path"`
	} `json:"patches"`
	Images []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// overlay is what one kustomization builds, resolved recursively.
type overlay struct {
	dir     string
	objects []runtime.Object
	files   []string
}

// loadKustomization reads dir/kustomization.yaml, checks every resource
// and patch it names exists and decodes strictly, and returns the objects.
func loadKustomization(t *testing.T, dir string, seen map[string]bool) overlay {
	t.Helper()
	path := filepath.Join(dir, "kustomization.yaml")
	docs := splitYAML(t, path)
	if len(docs) != 1 {
		t.Fatalf("%s: want one document, got %d", path, len(docs))
	}
	var k kustomization
	if err := strictYAML(docs[0], &k); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if k.APIVersion != "kustomize.config.k8s.io/v1beta1" || k.Kind != "Kustomization" {
		t.Errorf("%s: apiVersion/kind %s/%s", path, k.APIVersion, k.Kind)
	}
	if k.Namespace != "observability" {
		t.Errorf("%s: namespace %q, want observability (the Service names in deploy/istio, grafana, kiali assume it)", path, k.Namespace)
	}
	for _, img := range k.Images {
		if img.Name != meshlensImage || img.NewTag == "" {
			t.Errorf("%s: images entry %+v: want name %s with a newTag", path, img, meshlensImage)
		}
	}
	ov := overlay{dir: dir, files: []string{path}}
	seen[path] = true
	for _, r := range k.Resources {
		p := filepath.Join(dir, r)
		st, err := os.Stat(p)
		if err != nil {
			t.Errorf("%s: resource %s: %v", path, r, err)
			continue
		}
		if st.IsDir() {
			sub := loadKustomization(t, p, seen)
			ov.objects = append(ov.objects, sub.objects...)
			ov.files = append(ov.files, sub.files...)
			continue
		}
		seen[p] = true
		ov.files = append(ov.files, p)
		for i, doc := range splitYAML(t, p) {
			obj, err := decodeK8s(doc)
			if err != nil {
				t.Errorf("%s (document %d): %v", p, i+1, err)
				continue
			}
			ov.objects = append(ov.objects, obj)
		}
	}
	for _, pt := range k.Patches {
		p := filepath.Join(dir, pt.Path)
		seen[p] = true
		ov.files = append(ov.files, p)
		for i, doc := range splitYAML(t, p) {
			patch, err := decodeK8s(doc)
			if err != nil {
				t.Errorf("%s (document %d): %v", p, i+1, err)
				continue
			}
			// A strategic-merge patch must name an object the build has.
			if !slices.ContainsFunc(ov.objects, func(o runtime.Object) bool { return sameObject(o, patch) }) {
				t.Errorf("%s: patch target %s not among the resources", p, objName(patch))
			}
		}
	}
	return ov
}

func objName(o runtime.Object) string {
	m, err := metaOf(o)
	if err != nil {
		return fmt.Sprintf("%T", o)
	}
	return fmt.Sprintf("%T %s/%s", o, m.ns, m.name)
}

type meta struct{ ns, name string }

func metaOf(o runtime.Object) (meta, error) {
	acc, ok := o.(interface {
		GetName() string
		GetNamespace() string
	})
	if !ok {
		return meta{}, errors.New("no metadata")
	}
	return meta{acc.GetNamespace(), acc.GetName()}, nil
}

func sameObject(a, b runtime.Object) bool {
	ma, err1 := metaOf(a)
	mb, err2 := metaOf(b)
	return err1 == nil && err2 == nil && fmt.Sprintf("%T", a) == fmt.Sprintf("%T", b) && ma == mb
}

func objectsOf[T runtime.Object](ov overlay) []T {
	var out []T
	for _, o := range ov.objects {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

// TestKubernetesManifests builds each overlay, decodes every manifest
// strictly with the Kubernetes API types, and checks what the issue asks
// of an installation: RBAC limited to the identity resolver's reads,
// probes, resources, a non-root security context, a disruption budget,
// Service ports for every protocol, and a ConfigMap meshlens accepts.
func TestKubernetesManifests(t *testing.T) {
	seen := map[string]bool{}
	for _, name := range []string{"all-in-one", "scaled-out"} {
		t.Run(name, func(t *testing.T) {
			ov := loadKustomization(t, filepath.Join("kubernetes", "overlays", name), seen)
			checkRBAC(t, ov)
			checkService(t, ov)
			checkPDB(t, ov)
			pods := checkWorkloads(t, ov, name)
			checkConfig(t, ov, name, pods)
		})
	}
	// Every YAML file under kubernetes/ is reachable from an overlay, so
	// nothing is shipped that the tests (and kubectl apply -k) skip.
	_ = filepath.WalkDir("kubernetes", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".yaml") && !seen[p] {
			t.Errorf("%s is not referenced by any kustomization", p)
		}
		return nil
	})
}

func checkRBAC(t *testing.T, ov overlay) {
	t.Helper()
	roles := objectsOf[*rbacv1.ClusterRole](ov)
	if len(roles) != 1 || len(objectsOf[*rbacv1.Role](ov)) != 0 {
		t.Fatalf("want exactly one ClusterRole and no Role, got %d", len(roles))
	}
	// Exactly what processors/identity's informers read: pods, services,
	// EndpointSlices; get, list, watch.
	read := []string{"get", "list", "watch"}
	want := []rbacv1.PolicyRule{
		{APIGroups: []string{""}, Resources: []string{"pods", "services"}, Verbs: read},
		{APIGroups: []string{"discovery.k8s.io"}, Resources: []string{"endpointslices"}, Verbs: read},
	}
	if fmt.Sprint(roles[0].Rules) != fmt.Sprint(want) {
		t.Errorf("ClusterRole rules %+v, want only %+v", roles[0].Rules, want)
	}
	bindings := objectsOf[*rbacv1.ClusterRoleBinding](ov)
	if len(bindings) != 1 || bindings[0].RoleRef.Name != roles[0].Name || len(bindings[0].Subjects) != 1 ||
		bindings[0].Subjects[0].Kind != "ServiceAccount" || bindings[0].Subjects[0].Name != "meshlens" || bindings[0].Subjects[0].Namespace != "observability" {
		t.Errorf("ClusterRoleBinding does not bind %s to ServiceAccount observability/meshlens: %+v", roles[0].Name, bindings)
	}
	if sas := objectsOf[*corev1.ServiceAccount](ov); len(sas) != 1 || sas[0].Name != "meshlens" {
		t.Errorf("want ServiceAccount meshlens, got %v", sas)
	}
}

func checkService(t *testing.T, ov overlay) {
	t.Helper()
	var svc *corev1.Service
	for _, s := range objectsOf[*corev1.Service](ov) {
		if s.Name == "meshlens" {
			svc = s
		}
	}
	if svc == nil {
		t.Fatal("no Service meshlens")
	}
	got := map[string]int32{}
	for _, p := range svc.Spec.Ports {
		got[p.Name] = p.Port
		if p.TargetPort.String() != p.Name {
			t.Errorf("Service port %s targets %s, want the container port of the same name", p.Name, p.TargetPort.String())
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(meshlensPorts) {
		t.Errorf("Service meshlens ports %v, want %v", got, meshlensPorts)
	}
}

func checkPDB(t *testing.T, ov overlay) {
	t.Helper()
	pdbs := objectsOf[*policyv1.PodDisruptionBudget](ov)
	if len(pdbs) != 1 || pdbs[0].Spec.Selector == nil || pdbs[0].Spec.Selector.MatchLabels["app.kubernetes.io/name"] != "meshlens" {
		t.Errorf("want one PodDisruptionBudget selecting app.kubernetes.io/name=meshlens, got %+v", pdbs)
	}
}

// podUse is what the config check needs to know of a workload.
type podUse struct {
	spec       corev1.PodSpec
	configPath string // --config argument
}

func checkWorkloads(t *testing.T, ov overlay, name string) []podUse {
	t.Helper()
	var specs []corev1.PodSpec
	for _, s := range objectsOf[*appsv1.StatefulSet](ov) {
		specs = append(specs, s.Spec.Template.Spec)
		if name == "all-in-one" && len(s.Spec.VolumeClaimTemplates) == 0 {
			t.Errorf("StatefulSet %s has no PersistentVolumeClaim for embedded storage", s.Name)
		}
		if s.Spec.Template.Labels["app.kubernetes.io/name"] != "meshlens" {
			t.Errorf("StatefulSet %s pods are not labelled for the Service", s.Name)
		}
	}
	for _, d := range objectsOf[*appsv1.Deployment](ov) {
		specs = append(specs, d.Spec.Template.Spec)
		if d.Spec.Replicas == nil || *d.Spec.Replicas < 2 {
			t.Errorf("Deployment %s: scaled-out collectors want several replicas", d.Name)
		}
		if d.Spec.Template.Labels["app.kubernetes.io/name"] != "meshlens" {
			t.Errorf("Deployment %s pods are not labelled for the Service", d.Name)
		}
	}
	if len(specs) != 1 {
		t.Fatalf("want one meshlens workload, got %d", len(specs))
	}
	var uses []podUse
	for _, spec := range specs {
		if spec.ServiceAccountName != "meshlens" {
			t.Errorf("pod runs as ServiceAccount %q, want meshlens", spec.ServiceAccountName)
		}
		if psc := spec.SecurityContext; psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
			t.Errorf("pod security context must run as a non-root user: %+v", spec.SecurityContext)
		}
		for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
			if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() ||
				c.Resources.Limits.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
				t.Errorf("container %s: want cpu and memory requests and limits, got %+v", c.Name, c.Resources)
			}
			if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
				sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
				t.Errorf("container %s: want allowPrivilegeEscalation=false and all capabilities dropped", c.Name)
			}
		}
		var main *corev1.Container
		for i := range spec.Containers {
			if spec.Containers[i].Name == "meshlens" {
				main = &spec.Containers[i]
			}
		}
		if main == nil {
			t.Fatal("no container named meshlens")
		}
		if !strings.HasPrefix(main.Image, meshlensImage+":") {
			t.Errorf("image %s, want %s:<version>", main.Image, meshlensImage)
		}
		ports := map[string]int32{}
		for _, p := range main.Ports {
			ports[p.Name] = p.ContainerPort
		}
		if fmt.Sprint(ports) != fmt.Sprint(meshlensPorts) {
			t.Errorf("container ports %v, want %v", ports, meshlensPorts)
		}
		for probe, want := range map[string]struct {
			p    *corev1.Probe
			path string
		}{"liveness": {main.LivenessProbe, "/healthz"}, "readiness": {main.ReadinessProbe, "/readyz"}} {
			if want.p == nil || want.p.HTTPGet == nil || want.p.HTTPGet.Path != want.path || want.p.HTTPGet.Port.String() != "http-query" {
				t.Errorf("%s probe: want GET %s on http-query, got %+v", probe, want.path, want.p)
			}
		}
		if len(main.Args) != 3 || main.Args[0] != "serve" || main.Args[1] != "--config" {
			t.Fatalf("args %q, want serve --config <file>", main.Args)
		}
		uses = append(uses, podUse{spec: spec, configPath: main.Args[2]})
	}
	return uses
}

// checkConfig finds the meshlens.yaml each pod reads, loads it with
// meshlens's own configuration loader (so a wrong field fails here as it
// would at start-up), and checks it against the manifests.
func checkConfig(t *testing.T, ov overlay, name string, pods []podUse) {
	t.Helper()
	cms := map[string]*corev1.ConfigMap{}
	for _, cm := range objectsOf[*corev1.ConfigMap](ov) {
		cms[cm.Name] = cm
	}
	for _, pod := range pods {
		var main corev1.Container
		for _, c := range pod.spec.Containers {
			if c.Name == "meshlens" {
				main = c
			}
		}
		// Which volume holds the config, and where does it come from?
		dir := filepath.Dir(pod.configPath)
		var vol string
		for _, m := range main.VolumeMounts {
			if m.MountPath == dir {
				vol = m.Name
			}
		}
		var cmName, key string
		for _, v := range pod.spec.Volumes {
			if v.Name != vol {
				continue
			}
			switch {
			case v.ConfigMap != nil:
				cmName, key = v.ConfigMap.Name, filepath.Base(pod.configPath)
			case v.EmptyDir != nil:
				// Rendered by an init container from a template ConfigMap.
				cmName, key = renderedFrom(t, pod.spec, vol, pod.configPath)
			}
		}
		cm, ok := cms[cmName]
		if !ok || cm.Data[key] == "" {
			t.Fatalf("%s: the config %s (volume %q) comes from no ConfigMap key (%q/%q)", name, pod.configPath, vol, cmName, key)
		}
		file := filepath.Join(t.TempDir(), "meshlens.yaml")
		if err := os.WriteFile(file, []byte(cm.Data[key]), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg, _, err := server.LoadConfig([]string{"--config", file}, nil, io.Discard)
		if err != nil {
			t.Fatalf("ConfigMap %s key %s is not a valid meshlens config: %v", cmName, key, err)
		}
		for field, addr := range map[string]string{"http-query": cfg.Listen.HTTP, "grpc-ingest": cfg.Listen.GRPC,
			"http-zipkin": cfg.Listen.Zipkin, "grpc-otlp": cfg.Listen.OTLPGRPC, "http-otlp": cfg.Listen.OTLPHTTP} {
			if want := fmt.Sprintf(":%d", meshlensPorts[field]); addr != want {
				t.Errorf("config listens on %q for %s, want %q (the container port)", addr, field, want)
			}
		}
		var dataMounted bool
		for _, m := range main.VolumeMounts {
			if m.MountPath == cfg.Storage.Path && !m.ReadOnly {
				dataMounted = true
			}
		}
		if !dataMounted {
			t.Errorf("storage.path %s is not a writable volume mount (the root filesystem is read-only)", cfg.Storage.Path)
		}
		// The RBAC in base exists for the in-cluster identity resolver.
		if k := cfg.Processors.Kubernetes; !k.Enabled || k.Kubeconfig != "" {
			t.Errorf("processors.kubernetes %+v: want enabled with in-cluster credentials", k)
		}
		switch name {
		case "all-in-one":
			if len(cfg.Storage.RemoteWrite.Targets) != 0 {
				t.Errorf("all-in-one remote-writes to %v", cfg.Storage.RemoteWrite.Targets)
			}
		case "scaled-out":
			if len(cfg.Storage.RemoteWrite.Targets) == 0 {
				t.Error("scaled-out collectors have no storage.remote_write target")
			}
			if cfg.Storage.RemoteWrite.ExternalLabels["collector"] != "__POD_NAME__" {
				t.Errorf("scaled-out external_labels %v, want collector: __POD_NAME__ (rendered per pod)", cfg.Storage.RemoteWrite.ExternalLabels)
			}
		}
	}
}

// renderedFrom checks that an init container writes configPath into the
// emptyDir vol from a ConfigMap template, replacing __POD_NAME__ with the
// pod name from the Downward API, and returns the template's ConfigMap and
// key.
func renderedFrom(t *testing.T, spec corev1.PodSpec, vol, configPath string) (string, string) {
	t.Helper()
	for _, c := range spec.InitContainers {
		script := strings.Join(append(slices.Clone(c.Command), c.Args...), " ")
		if !strings.Contains(script, configPath) || !strings.Contains(script, "__POD_NAME__") {
			continue
		}
		var podName bool
		for _, e := range c.Env {
			if e.Name == "POD_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
				podName = true
			}
		}
		if !podName {
			t.Errorf("init container %s: POD_NAME is not the Downward API's metadata.name", c.Name)
		}
		for _, m := range c.VolumeMounts {
			for _, v := range spec.Volumes {
				if v.Name == m.Name && v.ConfigMap != nil {
					tmpl := m.MountPath + "/"
					if i := strings.Index(script, tmpl); i >= 0 {
						key := strings.Fields(script[i+len(tmpl):])[0]
						return v.ConfigMap.Name, key
					}
				}
			}
		}
	}
	t.Fatalf("no init container renders %s into volume %s", configPath, vol)
	return "", ""
}

// ---------------------------------------------------------------- Istio

// TestIstioMeshConfig decodes the meshConfig of each install form with
// Istio's MeshConfig proto (unknown fields fail) and checks it sends ALS,
// Metrics Service and Zipkin traffic to meshlens's ports.
func TestIstioMeshConfig(t *testing.T) {
	for _, tc := range []struct {
		file     string
		operator bool
	}{
		{"istio/meshconfig/istio-operator.yaml", true},
		{"istio/meshconfig/istiod-values.yaml", false},
	} {
		t.Run(tc.file, func(t *testing.T) {
			mc := loadMeshConfig(t, tc.file, tc.operator)
			if !mc.GetEnableEnvoyAccessLogService() {
				t.Error("enableEnvoyAccessLogService is not true")
			}
			pc := mc.GetDefaultConfig()
			if got := pc.GetEnvoyAccessLogService().GetAddress(); got != meshlensHost+":11800" {
				t.Errorf("envoyAccessLogService.address %q", got)
			}
			if got := pc.GetEnvoyMetricsService().GetAddress(); got != meshlensHost+":11800" {
				t.Errorf("envoyMetricsService.address %q", got)
			}
			if got := pc.GetTracing().GetZipkin().GetAddress(); got != meshlensHost+":9411" {
				t.Errorf("tracing.zipkin.address %q", got)
			}
			if s := pc.GetTracing().GetSampling(); s <= 0 || s > 100 {
				t.Errorf("tracing.sampling %v is not a percentage in (0, 100]", s)
			}
		})
	}
}

// loadMeshConfig returns the meshConfig block of an IstioOperator or of
// istiod Helm values, decoded strictly.
func loadMeshConfig(t *testing.T, file string, operator bool) *meshv1alpha1.MeshConfig {
	t.Helper()
	docs := splitYAML(t, file)
	if len(docs) != 1 {
		t.Fatalf("want one document, got %d", len(docs))
	}
	var block json.RawMessage
	if operator {
		var op struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name      string `json:"name"`
				Namespace string `json:"namespace"`
			} `json:"metadata"`
			Spec struct {
				MeshConfig json.RawMessage `json:"meshConfig"`
			} `json:"spec"`
		}
		if err := strictYAML(docs[0], &op); err != nil {
			t.Fatal(err)
		}
		if op.APIVersion != "install.istio.io/v1alpha1" || op.Kind != "IstioOperator" {
			t.Errorf("apiVersion/kind %s/%s", op.APIVersion, op.Kind)
		}
		block = op.Spec.MeshConfig
	} else {
		var values struct {
			MeshConfig json.RawMessage `json:"meshConfig"`
		}
		if err := strictYAML(docs[0], &values); err != nil {
			t.Fatal(err)
		}
		block = values.MeshConfig
	}
	mc := &meshv1alpha1.MeshConfig{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(block, mc); err != nil {
		t.Fatalf("meshConfig: %v", err)
	}
	return mc
}

// TestIstioTelemetryAPI checks the Telemetry API form: extension providers
// of type envoyHttpAls, envoyTcpAls and zipkin aimed at meshlens, and a
// mesh-wide Telemetry resource that selects them with a sampling
// percentage, decoded with istio client-go's Telemetry type and, for the
// spec, strictly with Istio's proto.
func TestIstioTelemetryAPI(t *testing.T) {
	mc := loadMeshConfig(t, "istio/telemetry-api/istiod-values.yaml", false)
	providers := map[string]*meshv1alpha1.MeshConfig_ExtensionProvider{}
	for _, p := range mc.GetExtensionProviders() {
		providers[p.GetName()] = p
	}
	var httpALS, tcpALS, zipkin string
	for name, p := range providers {
		switch {
		case p.GetEnvoyHttpAls() != nil:
			httpALS = name
			if a := p.GetEnvoyHttpAls(); a.GetService() != meshlensHost || a.GetPort() != 11800 {
				t.Errorf("provider %s: %s:%d", name, a.GetService(), a.GetPort())
			}
		case p.GetEnvoyTcpAls() != nil:
			tcpALS = name
			if a := p.GetEnvoyTcpAls(); a.GetService() != meshlensHost || a.GetPort() != 11800 {
				t.Errorf("provider %s: %s:%d", name, a.GetService(), a.GetPort())
			}
		case p.GetZipkin() != nil:
			zipkin = name
			if z := p.GetZipkin(); z.GetService() != meshlensHost || z.GetPort() != 9411 || (z.GetPath() != "" && z.GetPath() != "/api/v2/spans") {
				t.Errorf("provider %s: %s:%d%s", name, z.GetService(), z.GetPort(), z.GetPath())
			}
		}
	}
	if httpALS == "" || tcpALS == "" || zipkin == "" {
		t.Fatalf("want envoyHttpAls, envoyTcpAls and zipkin providers, got %v", providers)
	}

	docs := splitYAML(t, "istio/telemetry-api/telemetry.yaml")
	if len(docs) != 1 {
		t.Fatalf("telemetry.yaml: want one document, got %d", len(docs))
	}
	var tel telemetryv1.Telemetry
	if err := sigsyaml.UnmarshalStrict(docs[0], &tel); err != nil {
		t.Fatalf("telemetry.yaml: %v", err)
	}
	if tel.APIVersion != telemetryv1.SchemeGroupVersion.String() || tel.Kind != "Telemetry" {
		t.Errorf("telemetry.yaml: apiVersion/kind %s/%s", tel.APIVersion, tel.Kind)
	}
	// client-go's Telemetry spec accepts unknown fields; decode the spec
	// again with the proto, strictly.
	var raw struct {
		Spec json.RawMessage `json:"spec"`
	}
	j, _ := sigsyaml.YAMLToJSON(docs[0])
	_ = json.Unmarshal(j, &raw)
	spec := &telemetryapi.Telemetry{}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: false}).Unmarshal(raw.Spec, spec); err != nil {
		t.Fatalf("telemetry.yaml spec: %v", err)
	}
	if tel.Namespace != "istio-system" || spec.GetSelector() != nil || spec.GetTargetRef() != nil {
		t.Errorf("the Telemetry resource must be mesh-wide (root namespace istio-system, no selector)")
	}
	var logs []string
	for _, al := range spec.GetAccessLogging() {
		for _, p := range al.GetProviders() {
			logs = append(logs, p.GetName())
		}
	}
	sort.Strings(logs)
	if want := []string{httpALS, tcpALS}; !slices.Equal(logs, sortedCopy(want)) {
		t.Errorf("accessLogging providers %v, want %v", logs, want)
	}
	if len(spec.GetTracing()) != 1 || len(spec.GetTracing()[0].GetProviders()) != 1 || spec.GetTracing()[0].GetProviders()[0].GetName() != zipkin {
		t.Errorf("tracing does not select provider %s: %v", zipkin, spec.GetTracing())
	} else if pct := spec.GetTracing()[0].GetRandomSamplingPercentage(); pct == nil || pct.GetValue() <= 0 || pct.GetValue() > 100 {
		t.Errorf("tracing randomSamplingPercentage %v, want a percentage in (0, 100]", pct)
	}
}

func sortedCopy(s []string) []string {
	s = slices.Clone(s)
	sort.Strings(s)
	return s
}

// ---------------------------------------------------------------- Envoy

// TestEnvoyBootstrap decodes the plain-Envoy bootstrap with Envoy's
// Bootstrap proto (unknown fields fail, Any fields resolve to their
// extension types), runs Envoy's own field validation, and checks that the
// access loggers, the Metrics Service sink and the Zipkin tracer reach
// meshlens's ports through clusters that exist.
func TestEnvoyBootstrap(t *testing.T) {
	docs := splitYAML(t, "envoy/bootstrap-meshlens.yaml")
	if len(docs) != 1 {
		t.Fatalf("want one document, got %d", len(docs))
	}
	bs := &bootstrapv3.Bootstrap{}
	if err := strictProtoYAML(docs[0], bs); err != nil {
		t.Fatal(err)
	}
	if err := bs.ValidateAll(); err != nil {
		t.Fatalf("Envoy rejects the bootstrap: %v", err)
	}
	clusters := map[string]*clusterv3.Cluster{}
	for _, c := range bs.GetStaticResources().GetClusters() {
		clusters[c.GetName()] = c
	}
	clusterPort := func(name string) (string, uint32) {
		c := clusters[name]
		if c == nil {
			t.Errorf("cluster %q is not defined", name)
			return "", 0
		}
		sa := c.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
		return sa.GetAddress(), sa.GetPortValue()
	}
	// The metrics service sink.
	var sink bool
	for _, s := range bs.GetStatsSinks() {
		ms := &metricsv3.MetricsServiceConfig{}
		if s.GetTypedConfig().MessageIs(ms) {
			if err := s.GetTypedConfig().UnmarshalTo(ms); err != nil {
				t.Fatal(err)
			}
			host, port := clusterPort(ms.GetGrpcService().GetEnvoyGrpc().GetClusterName())
			sink = host == meshlensHost && port == 11800
		}
	}
	if !sink {
		t.Error("no envoy.stat_sinks.metrics_service sink to meshlens:11800")
	}
	// Access loggers and the tracer, wherever they are configured.
	var httpALS, tcpALS, zipkin bool
	for _, l := range bs.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				hcm := &hcmv3.HttpConnectionManager{}
				tcp := &tcpproxyv3.TcpProxy{}
				switch {
				case f.GetTypedConfig().MessageIs(hcm):
					if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
						t.Fatal(err)
					}
					for _, al := range hcm.GetAccessLog() {
						c := &alsv3.HttpGrpcAccessLogConfig{}
						if al.GetTypedConfig().MessageIs(c) && al.GetTypedConfig().UnmarshalTo(c) == nil {
							host, port := clusterPort(c.GetCommonConfig().GetGrpcService().GetEnvoyGrpc().GetClusterName())
							httpALS = host == meshlensHost && port == 11800 && c.GetCommonConfig().GetTransportApiVersion().String() == "V3"
						}
					}
					z := &tracev3.ZipkinConfig{}
					if tc := hcm.GetTracing().GetProvider().GetTypedConfig(); tc.MessageIs(z) && tc.UnmarshalTo(z) == nil {
						host, port := clusterPort(z.GetCollectorCluster())
						zipkin = host == meshlensHost && port == 9411 && z.GetCollectorEndpoint() == "/api/v2/spans"
					}
				case f.GetTypedConfig().MessageIs(tcp):
					if err := f.GetTypedConfig().UnmarshalTo(tcp); err != nil {
						t.Fatal(err)
					}
					for _, al := range tcp.GetAccessLog() {
						c := &alsv3.TcpGrpcAccessLogConfig{}
						if al.GetTypedConfig().MessageIs(c) && al.GetTypedConfig().UnmarshalTo(c) == nil {
							host, port := clusterPort(c.GetCommonConfig().GetGrpcService().GetEnvoyGrpc().GetClusterName())
							tcpALS = host == meshlensHost && port == 11800
						}
					}
				}
			}
		}
	}
	if !httpALS || !tcpALS || !zipkin {
		t.Errorf("HTTP ALS to meshlens:11800 %v, TCP ALS %v, Zipkin tracer to meshlens:9411 %v", httpALS, tcpALS, zipkin)
	}
	// gRPC needs HTTP/2 to the meshlens cluster.
	if c := clusters["meshlens_grpc"]; c != nil {
		opts := &upstreamhttpv3.HttpProtocolOptions{}
		if a := c.GetTypedExtensionProtocolOptions()["envoy.extensions.upstreams.http.v3.HttpProtocolOptions"]; a == nil || a.UnmarshalTo(opts) != nil ||
			opts.GetExplicitHttpConfig().GetHttp2ProtocolOptions() == nil {
			t.Error("cluster meshlens_grpc does not speak HTTP/2")
		}
	}
	// Node metadata meshlens names the proxy from.
	md := bs.GetNode().GetMetadata().GetFields()
	for _, k := range []string{"NAME", "NAMESPACE", "WORKLOAD_NAME", "LABELS"} {
		if md[k] == nil {
			t.Errorf("node metadata has no %s", k)
		}
	}
}

// TestStrictDecodersReject proves the decoders above are strict: a
// misspelt field in each kind of file is an error.
func TestStrictDecodersReject(t *testing.T) {
	if _, err := decodeK8s([]byte("apiVersion: v1\nkind: Service\nmetadata: {name: x}\nspec:\n  portz: []\n")); err == nil {
		t.Error("Kubernetes decoder accepted an unknown field")
	}
	if err := strictProtoYAML([]byte("enableEnvoyAccessLogServce: true\n"), &meshv1alpha1.MeshConfig{}); err == nil {
		t.Error("MeshConfig decoder accepted an unknown field")
	}
	if err := strictProtoYAML([]byte("static_resources: {clustrs: []}\n"), &bootstrapv3.Bootstrap{}); err == nil {
		t.Error("Bootstrap decoder accepted an unknown field")
	}
	if err := strictProtoYAML([]byte("tracing: [{randomSamplingPercent: 5}]\n"), &telemetryapi.Telemetry{}); err == nil {
		t.Error("Telemetry decoder accepted an unknown field")
	}
}

// ---------------------------------------------------------------- Kiali

// TestKialiConfig checks that both Kiali install forms point Prometheus
// and tracing at meshlens's HTTP port.
func TestKialiConfig(t *testing.T) {
	type external struct {
		Prometheus struct {
			URL string `json:"url"`
		} `json:"prometheus"`
		Tracing struct {
			Enabled     bool   `json:"enabled"`
			Provider    string `json:"provider"`
			UseGRPC     *bool  `json:"use_grpc"`
			InternalURL string `json:"internal_url"`
		} `json:"tracing"`
	}
	check := func(file string, ext external) {
		want := "http://" + meshlensHost + ":8088"
		if ext.Prometheus.URL != want {
			t.Errorf("%s: prometheus.url %q, want %q", file, ext.Prometheus.URL, want)
		}
		if !ext.Tracing.Enabled || ext.Tracing.Provider != "jaeger" || ext.Tracing.InternalURL != want ||
			ext.Tracing.UseGRPC == nil || *ext.Tracing.UseGRPC {
			t.Errorf("%s: tracing %+v, want jaeger over HTTP at %s (meshlens serves the Jaeger query API there, not Jaeger's gRPC query)", file, ext.Tracing, want)
		}
	}
	var cr struct {
		APIVersion string `json:"apiVersion"`
		Kind       string `json:"kind"`
		Spec       struct {
			ExternalServices external `json:"external_services"`
		} `json:"spec"`
	}
	docs := splitYAML(t, "kiali/kiali-cr.yaml")
	if err := sigsyaml.Unmarshal(docs[0], &cr); err != nil {
		t.Fatal(err)
	}
	if cr.APIVersion != "kiali.io/v1alpha1" || cr.Kind != "Kiali" {
		t.Errorf("kiali-cr.yaml: apiVersion/kind %s/%s", cr.APIVersion, cr.Kind)
	}
	check("kiali-cr.yaml", cr.Spec.ExternalServices)
	var values struct {
		ExternalServices external `json:"external_services"`
	}
	docs = splitYAML(t, "kiali/kiali-values.yaml")
	if err := sigsyaml.Unmarshal(docs[0], &values); err != nil {
		t.Fatal(err)
	}
	check("kiali-values.yaml", values.ExternalServices)

	// Kiali's Grafana links name dashboards by title and fill their
	// variables (var-<name>): both must exist in the shipped dashboards.
	titles := map[string]map[string]bool{}
	files, _ := filepath.Glob("grafana/dashboards/*.json")
	for _, f := range files {
		data, _ := os.ReadFile(f)
		var d gDashboard
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatal(err)
		}
		vars := map[string]bool{}
		for _, v := range d.Templating.List {
			vars[v.Name] = true
		}
		titles[d.Title] = vars
	}
	for _, file := range []string{"kiali/kiali-cr.yaml", "kiali/kiali-values.yaml"} {
		var doc map[string]any
		if err := sigsyaml.Unmarshal(splitYAML(t, file)[0], &doc); err != nil {
			t.Fatal(err)
		}
		if spec, ok := doc["spec"].(map[string]any); ok {
			doc = spec
		}
		es, _ := doc["external_services"].(map[string]any)
		graf, _ := es["grafana"].(map[string]any)
		dashboards, _ := graf["dashboards"].([]any)
		if len(dashboards) == 0 {
			t.Errorf("%s: no Grafana dashboards linked", file)
		}
		for _, d := range dashboards {
			dm := d.(map[string]any)
			vars, ok := titles[fmt.Sprint(dm["name"])]
			if !ok {
				t.Errorf("%s: dashboard %q is not shipped", file, dm["name"])
				continue
			}
			for _, v := range dm["variables"].(map[string]any) {
				if name := strings.TrimPrefix(fmt.Sprint(v), "var-"); !vars[name] {
					t.Errorf("%s: dashboard %q has no variable %q", file, dm["name"], name)
				}
			}
		}
	}
}

// ---------------------------------------------------------------- docs

// installPathRE finds the deploy/ paths that install commands name.
var installPathRE = regexp.MustCompile(`(?:kubectl apply -[kf]|istioctl install -f|envoy -c|-f|--from-file=)\s*(deploy/[\w./-]+)`)

// TestInstallStepsAreTested keeps docs/deploy.md and README.md honest: every
// deploy/ path an install command names exists and is one of the files
// these tests check.
func TestInstallStepsAreTested(t *testing.T) {
	tested := map[string]bool{
		"deploy/kubernetes/overlays/all-in-one":                 true,
		"deploy/kubernetes/overlays/scaled-out":                 true,
		"deploy/istio/meshconfig/istio-operator.yaml":           true,
		"deploy/istio/meshconfig/istiod-values.yaml":            true,
		"deploy/istio/telemetry-api/istiod-values.yaml":         true,
		"deploy/istio/telemetry-api/telemetry.yaml":             true,
		"deploy/envoy/bootstrap-meshlens.yaml":                  true,
		"deploy/kiali/kiali-cr.yaml":                            true,
		"deploy/kiali/kiali-values.yaml":                        true,
		"deploy/grafana/provisioning/datasources/meshlens.yaml": true,
		"deploy/grafana/provisioning/dashboards/meshlens.yaml":  true,
		"deploy/grafana/dashboards":                             true,
		"deploy/Dockerfile":                                     true,
	}
	var found int
	for _, doc := range []string{"../docs/deploy.md", "../README.md"} {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range installPathRE.FindAllStringSubmatch(string(data), -1) {
			p := strings.TrimRight(m[1], "./")
			found++
			if _, err := os.Stat(filepath.Join("..", p)); err != nil {
				t.Errorf("%s: install step names %s, which does not exist", doc, p)
			}
			if !tested[p] {
				t.Errorf("%s: install step names %s, which no deploy test checks", doc, p)
			}
		}
	}
	if found < 5 {
		t.Errorf("found only %d install steps in docs/deploy.md and README.md", found)
	}
}

// TestDockerfile checks what the manifests assume of the image (it is not
// built here): a static binary on a distroless nonroot base, running as
// UID 65532, exposing meshlens's ports, serving the mounted config.
func TestDockerfile(t *testing.T) {
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var froms []string
	var user, expose, cmd string
	var static bool
	for _, l := range strings.Split(string(data), "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		switch f[0] {
		case "FROM":
			froms = append(froms, f[1])
		case "USER":
			user = f[1]
		case "EXPOSE":
			expose = strings.Join(f[1:], " ")
		case "CMD":
			cmd = strings.Join(f[1:], " ")
		case "RUN":
			static = static || (strings.Contains(l, "CGO_ENABLED=0") && strings.Contains(l, "./cmd/meshlens"))
		}
	}
	if len(froms) < 2 || !strings.Contains(froms[len(froms)-1], "distroless") || !strings.HasSuffix(froms[len(froms)-1], ":nonroot") {
		t.Errorf("want a multi-stage build ending on distroless nonroot, got %v", froms)
	}
	if user != "65532:65532" || !static {
		t.Errorf("USER %q (want 65532:65532, the manifests' runAsUser), static build %v", user, static)
	}
	var ports []string
	for _, p := range meshlensPorts {
		ports = append(ports, strconv.Itoa(int(p)))
	}
	got := strings.Fields(expose)
	if !slices.Equal(sortedCopy(got), sortedCopy(ports)) {
		t.Errorf("EXPOSE %v, want %v", got, ports)
	}
	if cmd != `["serve", "--config", "/etc/meshlens/meshlens.yaml"]` {
		t.Errorf("CMD %s, want the manifests' serve --config /etc/meshlens/meshlens.yaml", cmd)
	}
}

// ---------------------------------------------------------------- Grafana

const promUID = "meshlens-prometheus"

// TestGrafanaProvisioning decodes the datasource and dashboard provisioning
// files (unknown keys fail) and checks the datasources Grafana needs: the
// Prometheus datasource the dashboards reference, Jaeger and Zipkin with
// trace-to-metrics links to it, and the service-graph settings.
func TestGrafanaProvisioning(t *testing.T) {
	type dsJSON map[string]any
	var ds struct {
		APIVersion  int `json:"apiVersion"`
		Datasources []struct {
			Name      string `json:"name"`
			UID       string `json:"uid"`
			Type      string `json:"type"`
			Access    string `json:"access"`
			URL       string `json:"url"`
			IsDefault bool   `json:"isDefault"`
			Editable  bool   `json:"editable"`
			JSONData  dsJSON `json:"jsonData"`
		} `json:"datasources"`
	}
	docs := splitYAML(t, "grafana/provisioning/datasources/meshlens.yaml")
	if err := strictYAML(docs[0], &ds); err != nil {
		t.Fatal(err)
	}
	if ds.APIVersion != 1 {
		t.Errorf("apiVersion %d", ds.APIVersion)
	}
	byType := map[string]string{}
	for _, d := range ds.Datasources {
		byType[d.Type] = d.UID
		if d.URL != "http://"+meshlensHost+":8088" || d.Access != "proxy" {
			t.Errorf("datasource %s: url %q access %q, want meshlens's HTTP port through Grafana's proxy", d.Name, d.URL, d.Access)
		}
		if d.Type == "prometheus" {
			continue
		}
		ttm, _ := d.JSONData["tracesToMetrics"].(map[string]any)
		if ttm["datasourceUid"] != promUID {
			t.Errorf("datasource %s: tracesToMetrics.datasourceUid %v, want %s", d.Name, ttm["datasourceUid"], promUID)
		}
		queries, _ := ttm["queries"].([]any)
		for _, q := range queries {
			expr := strings.ReplaceAll(q.(map[string]any)["query"].(string), "$$__tags", `service_name="x"`)
			if _, err := promqlParser.ParseExpr(expr); err != nil {
				t.Errorf("datasource %s: tracesToMetrics query %q: %v", d.Name, expr, err)
			}
		}
		if d.Type == "tempo" {
			sm, _ := d.JSONData["serviceMap"].(map[string]any)
			if sm["datasourceUid"] != promUID {
				t.Errorf("datasource %s: serviceMap.datasourceUid %v, want %s (Grafana's Service Graph reads traces_service_graph_* there)", d.Name, sm["datasourceUid"], promUID)
			}
		}
	}
	for _, typ := range []string{"prometheus", "jaeger", "zipkin", "tempo"} {
		if byType[typ] == "" {
			t.Errorf("no %s datasource", typ)
		}
	}
	if byType["prometheus"] != promUID {
		t.Errorf("Prometheus datasource uid %q, want %q (the dashboards reference it)", byType["prometheus"], promUID)
	}

	var prov struct {
		APIVersion int `json:"apiVersion"`
		Providers  []struct {
			Name                  string `json:"name"`
			OrgID                 int    `json:"orgId"`
			Folder                string `json:"folder"`
			FolderUID             string `json:"folderUid"`
			Type                  string `json:"type"`
			DisableDeletion       bool   `json:"disableDeletion"`
			AllowUIUpdates        bool   `json:"allowUiUpdates"`
			UpdateIntervalSeconds int    `json:"updateIntervalSeconds"`
			Options               struct {
				Path                      string `json:"path"`
				FoldersFromFilesStructure bool   `json:"foldersFromFilesStructure"`
			} `json:"options"`
		} `json:"providers"`
	}
	docs = splitYAML(t, "grafana/provisioning/dashboards/meshlens.yaml")
	if err := strictYAML(docs[0], &prov); err != nil {
		t.Fatal(err)
	}
	if len(prov.Providers) != 1 || prov.Providers[0].Type != "file" || prov.Providers[0].Options.Path == "" {
		t.Errorf("dashboard provider %+v, want one file provider with a path", prov.Providers)
	}
}

// TestGrafanaDashboards runs the dashboard checker on every shipped
// dashboard.
func TestGrafanaDashboards(t *testing.T) {
	files, _ := filepath.Glob("grafana/dashboards/*.json")
	if len(files) < 5 {
		t.Fatalf("want the mesh, service, workload, endpoint and relation dashboards, found %v", files)
	}
	uids := map[string]string{}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		uid, errs := checkDashboard(data, map[string]bool{promUID: true})
		for _, err := range errs {
			t.Errorf("%s: %v", f, err)
		}
		if prev, dup := uids[uid]; dup {
			t.Errorf("%s and %s share uid %q", prev, f, uid)
		}
		uids[uid] = f
	}
}

// TestDashboardCheckerRejects proves the checker fails dashboards Grafana
// would reject or show broken.
func TestDashboardCheckerRejects(t *testing.T) {
	good, err := os.ReadFile("grafana/dashboards/service.json")
	if err != nil {
		t.Fatal(err)
	}
	if _, errs := checkDashboard(good, map[string]bool{promUID: true}); len(errs) > 0 {
		t.Fatalf("good dashboard rejected: %v", errs)
	}
	mutate := func(f func(d map[string]any)) []byte {
		var d map[string]any
		if err := json.Unmarshal(good, &d); err != nil {
			t.Fatal(err)
		}
		f(d)
		out, _ := json.Marshal(d)
		return out
	}
	panel := func(d map[string]any, i int) map[string]any { return d["panels"].([]any)[i].(map[string]any) }
	firstQueryPanel := func(d map[string]any) map[string]any {
		for _, p := range d["panels"].([]any) {
			if pm := p.(map[string]any); pm["type"] != "row" {
				return pm
			}
		}
		return nil
	}
	for name, bad := range map[string][]byte{
		"not JSON":           []byte(`{"title": "x", "panels": [`),
		"no title":           mutate(func(d map[string]any) { delete(d, "title") }),
		"bad uid":            mutate(func(d map[string]any) { d["uid"] = "has spaces and is much too long for a grafana uid" }),
		"no schemaVersion":   mutate(func(d map[string]any) { delete(d, "schemaVersion") }),
		"duplicate panel id": mutate(func(d map[string]any) { panel(d, 2)["id"] = panel(d, 1)["id"] }),
		"panel without grid": mutate(func(d map[string]any) { delete(firstQueryPanel(d), "gridPos") }),
		"panel too wide":     mutate(func(d map[string]any) { firstQueryPanel(d)["gridPos"].(map[string]any)["w"] = 30 }),
		"unknown panel type": mutate(func(d map[string]any) { firstQueryPanel(d)["type"] = "grpah" }),
		"target without ref": mutate(func(d map[string]any) { delete(firstQueryPanel(d)["targets"].([]any)[0].(map[string]any), "refId") }),
		"bad PromQL": mutate(func(d map[string]any) {
			firstQueryPanel(d)["targets"].([]any)[0].(map[string]any)["expr"] = "sum(rate(x[5m])"
		}),
		"unknown datasource": mutate(func(d map[string]any) {
			firstQueryPanel(d)["datasource"] = map[string]any{"type": "prometheus", "uid": "nope"}
		}),
		"undefined variable": mutate(func(d map[string]any) {
			firstQueryPanel(d)["targets"].([]any)[0].(map[string]any)["expr"] = `sum(meshlens_service_calls_total{service="$svc"})`
		}),
		"variable no query": mutate(func(d map[string]any) {
			delete(d["templating"].(map[string]any)["list"].([]any)[0].(map[string]any), "query")
		}),
		"bad label_values": mutate(func(d map[string]any) {
			d["templating"].(map[string]any)["list"].([]any)[0].(map[string]any)["query"] = "label_values(meshlens_service_calls_total{"
		}),
		"duplicate refId": mutate(func(d map[string]any) {
			p := firstQueryPanel(d)
			p["targets"] = append(p["targets"].([]any), p["targets"].([]any)[0])
		}),
		"duplicate variable": mutate(func(d map[string]any) {
			l := d["templating"].(map[string]any)
			l["list"] = append(l["list"].([]any), l["list"].([]any)[0])
		}),
		"target has no expr":  mutate(func(d map[string]any) { delete(firstQueryPanel(d)["targets"].([]any)[0].(map[string]any), "expr") }),
		"panels not an array": mutate(func(d map[string]any) { d["panels"] = map[string]any{} }),
	} {
		if _, errs := checkDashboard(bad, map[string]bool{promUID: true}); len(errs) == 0 {
			t.Errorf("%s: accepted", name)
		}
	}
}

// Panel types Grafana ships (the ones a dashboard here may use).
var panelTypes = map[string]bool{"row": true, "timeseries": true, "stat": true, "table": true, "gauge": true,
	"bargauge": true, "text": true, "heatmap": true, "piechart": true, "nodeGraph": true, "barchart": true}

var (
	uidRE     = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,40}$`)
	varRefRE  = regexp.MustCompile(`\$(?:\{(\w+)(?::\w+)?\}|(\w+))|\[\[(\w+)\]\]`)
	labelVals = regexp.MustCompile(`^label_values\((.*?)(?:,\s*)?(\w+)\)$`)
)

// builtinVars are the variables Grafana itself defines.
var builtinVars = map[string]bool{"__rate_interval": true, "__interval": true, "__interval_ms": true, "__range": true,
	"__range_s": true, "__range_ms": true, "__dashboard": true, "__from": true, "__to": true, "__org": true, "__user": true}

// gDashboard is the part of Grafana's dashboard model the checker reads.
type gDashboard struct {
	UID           string                `json:"uid"`
	Title         string                `json:"title"`
	SchemaVersion int                   `json:"schemaVersion"`
	Panels        []gPanel              `json:"panels"`
	Templating    struct{ List []gVar } `json:"templating"`
}

type gDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type gPanel struct {
	ID         *int         `json:"id"`
	Type       string       `json:"type"`
	Title      string       `json:"title"`
	Datasource *gDatasource `json:"datasource"`
	GridPos    *struct {
		H, W, X, Y *int
	} `json:"gridPos"`
	Targets []struct {
		RefID      string       `json:"refId"`
		Expr       *string      `json:"expr"`
		Datasource *gDatasource `json:"datasource"`
	} `json:"targets"`
	Panels []gPanel `json:"panels"`
}

type gVar struct {
	Name       string          `json:"name"`
	Type       string          `json:"type"`
	Datasource *gDatasource    `json:"datasource"`
	Query      json.RawMessage `json:"query"`
}

// checkDashboard returns the dashboard's uid and every problem that would
// make Grafana reject it, or load it with broken panels: the model's
// required fields, unique panel ids, panels on the 24-column grid, known
// panel types, unique refIds, targets on a provisioned datasource whose
// PromQL parses, and template variables that are defined, unique and
// valid label_values queries.
func checkDashboard(data []byte, datasources map[string]bool) (string, []error) {
	var d gDashboard
	if err := json.Unmarshal(data, &d); err != nil {
		return "", []error{fmt.Errorf("not a dashboard: %w", err)}
	}
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if strings.TrimSpace(d.Title) == "" {
		add("no title")
	}
	if !uidRE.MatchString(d.UID) {
		add("uid %q: Grafana wants 1-40 characters of [a-zA-Z0-9_-]", d.UID)
	}
	if d.SchemaVersion < 36 {
		add("schemaVersion %d: want 36 or later (datasource references by uid)", d.SchemaVersion)
	}
	if len(d.Panels) == 0 {
		add("no panels")
	}
	vars := map[string]bool{}
	for _, v := range d.Templating.List {
		if vars[v.Name] || v.Name == "" {
			add("template variable %q is empty or defined twice", v.Name)
		}
		vars[v.Name] = true
		switch v.Type {
		case "query":
			if v.Datasource == nil || !datasources[v.Datasource.UID] {
				add("variable %s: datasource %+v is not provisioned", v.Name, v.Datasource)
			}
			q := variableQuery(v.Query)
			m := labelVals.FindStringSubmatch(q)
			if m == nil {
				add("variable %s: query %q is not label_values(<selector>, <label>)", v.Name, q)
				continue
			}
			if m[1] != "" {
				if _, err := promqlParser.ParseMetricSelector(substitute(m[1], nil)); err != nil {
					add("variable %s: selector %q: %v", v.Name, m[1], err)
				}
			}
		case "custom", "interval", "constant", "textbox", "datasource":
		default:
			add("variable %s: type %q", v.Name, v.Type)
		}
	}
	// Variables may only refer to variables defined before them.
	for _, v := range d.Templating.List {
		for _, ref := range varRefs(variableQuery(v.Query)) {
			if !vars[ref] && !builtinVars[ref] {
				add("variable %s refers to undefined $%s", v.Name, ref)
			}
		}
	}
	ids := map[int]bool{}
	var walk func(ps []gPanel)
	walk = func(ps []gPanel) {
		for _, p := range ps {
			where := fmt.Sprintf("panel %q", p.Title)
			if p.ID == nil {
				add("%s has no id", where)
			} else if ids[*p.ID] {
				add("%s: id %d used twice", where, *p.ID)
			} else {
				ids[*p.ID] = true
			}
			if !panelTypes[p.Type] {
				add("%s: unknown panel type %q", where, p.Type)
			}
			if g := p.GridPos; g == nil || g.H == nil || g.W == nil || g.X == nil || g.Y == nil {
				add("%s: gridPos needs h, w, x and y", where)
			} else if *g.W < 1 || *g.H < 1 || *g.X < 0 || *g.Y < 0 || *g.X+*g.W > 24 {
				add("%s: gridPos %d,%d %dx%d is off the 24-column grid", where, *g.X, *g.Y, *g.W, *g.H)
			}
			for _, ref := range varRefs(p.Title) {
				if !vars[ref] && !builtinVars[ref] {
					add("%s: title refers to undefined $%s", where, ref)
				}
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			if p.Datasource != nil && !datasources[p.Datasource.UID] {
				add("%s: datasource %+v is not provisioned", where, p.Datasource)
			}
			if len(p.Targets) == 0 && p.Type != "text" {
				add("%s has no targets", where)
			}
			refs := map[string]bool{}
			for _, tg := range p.Targets {
				if tg.RefID == "" || refs[tg.RefID] {
					add("%s: refId %q is empty or used twice", where, tg.RefID)
				}
				refs[tg.RefID] = true
				ds := tg.Datasource
				if ds == nil {
					ds = p.Datasource
				}
				if ds == nil || !datasources[ds.UID] {
					add("%s %s: datasource %+v is not provisioned", where, tg.RefID, ds)
				}
				if tg.Expr == nil || strings.TrimSpace(*tg.Expr) == "" {
					add("%s %s: no expr", where, tg.RefID)
					continue
				}
				for _, ref := range varRefs(*tg.Expr) {
					if !vars[ref] && !builtinVars[ref] {
						add("%s %s: refers to undefined $%s", where, tg.RefID, ref)
					}
				}
				if _, err := promqlParser.ParseExpr(substitute(*tg.Expr, nil)); err != nil {
					add("%s %s: %q: %v", where, tg.RefID, *tg.Expr, err)
				}
			}
		}
	}
	walk(d.Panels)
	return d.UID, errs
}

// variableQuery returns a query variable's PromQL, which Grafana stores
// either as a string or as {"query": "..."}.
func variableQuery(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(raw, &o)
	return o.Query
}

func varRefs(s string) []string {
	var out []string
	for _, m := range varRefRE.FindAllStringSubmatch(s, -1) {
		out = append(out, m[1]+m[2]+m[3])
	}
	return out
}

// substitute replaces template variables with values (a placeholder when
// nil) and Grafana's interval variables with durations, so the PromQL
// parser sees what Grafana sends.
func substitute(expr string, values map[string]string) string {
	return varRefRE.ReplaceAllStringFunc(expr, func(m string) string {
		sm := varRefRE.FindStringSubmatch(m)
		name := sm[1] + sm[2] + sm[3]
		switch name {
		case "__rate_interval", "__range", "__interval":
			return "1m"
		case "__range_s":
			return "60"
		case "__interval_ms", "__range_ms":
			return "60000"
		}
		if v, ok := values[name]; ok {
			return v
		}
		return "x"
	})
}

// promqlParser parses PromQL as meshlens's query engine does.
var promqlParser = parser.NewParser(parser.Options{})
