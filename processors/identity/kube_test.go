package identity

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/meshlens/meshlens/model"
)

func pod(name, ns, ip string, labels map[string]string, rs string) *corev1.Pod {
	yes := true
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels},
		Status:     corev1.PodStatus{Phase: corev1.PodRunning, PodIP: ip, PodIPs: []corev1.PodIP{{IP: ip}}},
	}
	if rs != "" {
		p.OwnerReferences = []metav1.OwnerReference{{Kind: "ReplicaSet", Name: rs, Controller: &yes, APIVersion: "apps/v1"}}
	}
	return p
}

// eventually polls f until it returns true or the deadline passes.
func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if f() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}

func TestKubeResolverPodsComeAndGo(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := fake.NewClientset(
		pod("reviews-v1-7f99c6d4b-abcde", "default", "10.0.0.20", map[string]string{
			"app": "reviews", "version": "v1", "pod-template-hash": "7f99c6d4b",
			LabelCanonicalName: "reviews", LabelCanonicalRevision: "v1",
		}, "reviews-v1-7f99c6d4b"),
	)
	k, err := NewKubeResolver(client, KubeConfig{ClusterID: "Kubernetes"}, Naming{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer k.Shutdown()
	defer cancel()

	id, ok := k.ResolveIP("10.0.0.20", 9080)
	want := model.Identity{Service: "reviews", Namespace: "default", Cluster: "Kubernetes", Workload: "reviews-v1",
		Version: "v1", Instance: "reviews-v1-7f99c6d4b-abcde", IP: "10.0.0.20"}
	if !ok || id != want {
		t.Fatalf("initial pod: %+v %v\nwant %+v", id, ok, want)
	}

	// A new pod appears: resolvable once the informer sees it. It has only
	// an app label, so naming falls back to it.
	pods := client.CoreV1().Pods("shop")
	if _, err := pods.Create(ctx, pod("cart-5d9-xyz", "shop", "10.0.1.5", map[string]string{"app": "cart", "pod-template-hash": "5d9"}, "cart-5d9"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "new pod resolvable", func() bool {
		id, ok := k.ResolveIP("10.0.1.5", 0)
		return ok && id.Service == "cart" && id.Workload == "cart" && id.Namespace == "shop"
	})

	// The pod goes away: its IP no longer resolves to it.
	if err := pods.Delete(ctx, "cart-5d9-xyz", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "deleted pod gone", func() bool {
		_, ok := k.ResolveIP("10.0.1.5", 0)
		return !ok
	})

	// The IP is reused by another pod: it resolves to the new one.
	if _, err := pods.Create(ctx, pod("payments-0", "shop", "10.0.1.5", map[string]string{"app": "payments"}, ""), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "reused IP", func() bool {
		id, ok := k.ResolveIP("10.0.1.5", 0)
		return ok && id.Service == "payments" && id.Workload == "payments-0"
	})

	// A finished pod keeps its IP in status but must not claim it.
	done := pod("job-1", "shop", "10.0.1.99", map[string]string{"app": "batch"}, "")
	done.Status.Phase = corev1.PodSucceeded
	if _, err := pods.Create(ctx, done, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	// Service ClusterIP and an EndpointSlice address without a pod.
	if _, err := client.CoreV1().Services("default").Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "reviews", Namespace: "default"},
		Spec:       corev1.ServiceSpec{ClusterIP: "10.96.0.20", ClusterIPs: []string{"10.96.0.20"}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := client.DiscoveryV1().EndpointSlices("default").Create(ctx, &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Name: "legacy-db-abc", Namespace: "default", Labels: map[string]string{discoveryv1.LabelServiceName: "legacy-db"}},
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"192.168.50.10"}}},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "service ClusterIP", func() bool {
		id, ok := k.ResolveIP("10.96.0.20", 9080)
		return ok && id.Service == "reviews" && id.Namespace == "default"
	})
	eventually(t, "endpoint slice address", func() bool {
		id, ok := k.ResolveIP("192.168.50.10", 5432)
		return ok && id.Service == "legacy-db"
	})
	if _, ok := k.ResolveIP("10.0.1.99", 0); ok {
		t.Error("succeeded pod still resolves its IP")
	}

	// Through the processor: an inbound call from the reviews pod.
	p, err := New(DefaultConfig(), nil, k)
	if err != nil {
		t.Fatal(err)
	}
	calls := []model.Call{{DetectPoint: model.DetectServer,
		Destination: model.Identity{Service: "ratings", Namespace: "default"},
		Source:      model.Identity{IP: "10.0.0.20", Instance: "10.0.0.20"}}}
	p.ProcessCalls(ctx, calls)
	if calls[0].Source != want {
		t.Errorf("processor with kube resolver: %+v", calls[0].Source)
	}
}
