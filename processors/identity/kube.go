package identity

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"github.com/meshlens/meshlens/model"
)

// KubeConfig configures the Kubernetes resolver.
type KubeConfig struct {
	// ClusterID fills Identity.Cluster (Istio's CLUSTER_ID, "Kubernetes"
	// by default in Istio).
	ClusterID string
	// Resync is the informers' resync period (0: never).
	Resync time.Duration
	// SyncTimeout bounds how long Start waits for the first list.
	SyncTimeout time.Duration
}

const (
	byIP = "ip"
)

// KubeResolver resolves IPs to pods (and through their labels and owner to
// a service, workload and version) and to Services (ClusterIP and
// EndpointSlice addresses), from client-go shared informers. Deleted pods
// leave the index as soon as the informer sees the deletion.
type KubeResolver struct {
	factory informers.SharedInformerFactory
	pods    cache.SharedIndexInformer
	svcs    cache.SharedIndexInformer
	slices  cache.SharedIndexInformer
	naming  Naming
	cfg     KubeConfig
	logger  *slog.Logger
}

// NewKubeResolver sets up the informers; call Start before use. naming
// chooses a pod's service name from its labels.
func NewKubeResolver(client kubernetes.Interface, cfg KubeConfig, naming Naming, logger *slog.Logger) (*KubeResolver, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SyncTimeout <= 0 {
		cfg.SyncTimeout = time.Minute
	}
	naming = naming.withDefaults()
	f := informers.NewSharedInformerFactory(client, cfg.Resync)
	k := &KubeResolver{
		factory: f,
		pods:    f.Core().V1().Pods().Informer(),
		svcs:    f.Core().V1().Services().Informer(),
		slices:  f.Discovery().V1().EndpointSlices().Informer(),
		naming:  naming,
		cfg:     cfg,
		logger:  logger,
	}
	// Keep only what resolution reads: the cache then holds a few hundred
	// bytes per pod instead of the whole object.
	if err := k.pods.SetTransform(trimPod); err != nil {
		return nil, err
	}
	if err := k.pods.AddIndexers(cache.Indexers{byIP: podIPs}); err != nil {
		return nil, err
	}
	if err := k.svcs.AddIndexers(cache.Indexers{byIP: serviceIPs}); err != nil {
		return nil, err
	}
	if err := k.slices.AddIndexers(cache.Indexers{byIP: sliceIPs}); err != nil {
		return nil, err
	}
	return k, nil
}

// Start runs the informers until ctx ends and waits for their first sync.
func (k *KubeResolver) Start(ctx context.Context) error {
	k.factory.Start(ctx.Done())
	syncCtx, cancel := context.WithTimeout(ctx, k.cfg.SyncTimeout)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), k.pods.HasSynced, k.svcs.HasSynced, k.slices.HasSynced) {
		return errors.New("kubernetes resolver: informers did not sync (check RBAC: list/watch pods, services, endpointslices)")
	}
	return nil
}

// Shutdown waits for the informer goroutines after ctx of Start ended.
func (k *KubeResolver) Shutdown() { k.factory.Shutdown() }

func trimPod(obj any) (any, error) {
	p, ok := obj.(*corev1.Pod)
	if !ok {
		return obj, nil // tombstones and the like
	}
	return &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{
			Name: p.Name, Namespace: p.Namespace, UID: p.UID, ResourceVersion: p.ResourceVersion,
			Labels: p.Labels, OwnerReferences: p.OwnerReferences,
		},
		Spec:   corev1.PodSpec{HostNetwork: p.Spec.HostNetwork, ServiceAccountName: p.Spec.ServiceAccountName},
		Status: corev1.PodStatus{Phase: p.Status.Phase, PodIP: p.Status.PodIP, PodIPs: p.Status.PodIPs},
	}, nil
}

func podIPs(obj any) ([]string, error) {
	p, ok := obj.(*corev1.Pod)
	// Host-network pods share the node's IP; finished pods may have passed
	// their IP on.
	if !ok || p.Spec.HostNetwork || p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
		return nil, nil
	}
	var ips []string
	for _, ip := range p.Status.PodIPs {
		ips = append(ips, ip.IP)
	}
	if len(ips) == 0 && p.Status.PodIP != "" {
		ips = append(ips, p.Status.PodIP)
	}
	return ips, nil
}

func serviceIPs(obj any) ([]string, error) {
	s, ok := obj.(*corev1.Service)
	if !ok {
		return nil, nil
	}
	var ips []string
	for _, ip := range s.Spec.ClusterIPs {
		if ip != "" && ip != corev1.ClusterIPNone {
			ips = append(ips, ip)
		}
	}
	if len(ips) == 0 && s.Spec.ClusterIP != "" && s.Spec.ClusterIP != corev1.ClusterIPNone {
		ips = append(ips, s.Spec.ClusterIP)
	}
	return ips, nil
}

func sliceIPs(obj any) ([]string, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	var ips []string
	for _, ep := range s.Endpoints {
		ips = append(ips, ep.Addresses...)
	}
	return ips, nil
}

// ResolveIP implements IPResolver: a pod first, then a Service ClusterIP,
// then an EndpointSlice address (endpoints without a pod, such as
// selector-less services pointing at VMs).
func (k *KubeResolver) ResolveIP(ip string, port int) (model.Identity, bool) {
	if objs, _ := k.pods.GetIndexer().ByIndex(byIP, ip); len(objs) > 0 {
		best := objs[0].(*corev1.Pod)
		for _, o := range objs[1:] {
			if p := o.(*corev1.Pod); p.Status.Phase == corev1.PodRunning && best.Status.Phase != corev1.PodRunning {
				best = p
			}
		}
		return k.podIdentity(best, ip), true
	}
	if objs, _ := k.svcs.GetIndexer().ByIndex(byIP, ip); len(objs) > 0 {
		s := objs[0].(*corev1.Service)
		return model.Identity{Service: s.Name, Namespace: s.Namespace,
			Cluster: k.cfg.ClusterID, IP: ip}, true
	}
	if objs, _ := k.slices.GetIndexer().ByIndex(byIP, ip); len(objs) > 0 {
		s := objs[0].(*discoveryv1.EndpointSlice)
		if name := s.Labels[discoveryv1.LabelServiceName]; name != "" {
			return model.Identity{Service: name, Namespace: s.Namespace,
				Cluster: k.cfg.ClusterID, IP: ip}, true
		}
	}
	return model.Identity{}, false
}

func (k *KubeResolver) podIdentity(p *corev1.Pod, ip string) model.Identity {
	workload := podWorkload(p)
	id := model.Identity{
		Service:   k.naming.ServiceName(p.Labels, workload),
		Namespace: p.Namespace,
		Cluster:   k.cfg.ClusterID,
		Workload:  workload,
		Version:   p.Labels[LabelCanonicalRevision],
		Instance:  p.Name,
		IP:        ip,
	}
	if id.Version == "" {
		id.Version = p.Labels["version"]
	}
	return id
}

// podWorkload derives the deployment-level name: a ReplicaSet owner minus
// its pod-template-hash suffix, another owner's name, else the pod's name.
func podWorkload(p *corev1.Pod) string {
	for _, o := range p.OwnerReferences {
		if o.Controller == nil || !*o.Controller {
			continue
		}
		if o.Kind == "ReplicaSet" {
			if h := p.Labels["pod-template-hash"]; h != "" {
				if name, ok := strings.CutSuffix(o.Name, "-"+h); ok {
					return name
				}
			}
		}
		return o.Name
	}
	return p.Name
}

// String describes the resolver for logs.
func (k *KubeResolver) String() string {
	return fmt.Sprintf("kubernetes(cluster=%s)", k.cfg.ClusterID)
}
