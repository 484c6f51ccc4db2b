package e2e

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// Where a round's CPU goes, for TestMeasureCreationsThroughTheAPIServer: the control plane's and the kubelet's
// processes (hack/cluster.sh runs them on this host and writes their pids), this test process (the client), the injector's replicas (their
// process_cpu_seconds_total), and the whole machine (/proc/stat); and how many connections the API server opened
// to the injector's Service (its sockets, sampled from /proc/<pid>/net/tcp while the round runs).

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every Linux this runs on.
const clockTicks = 100

// measuredProcesses are the cluster's processes whose CPU a round reads (hack/cluster.sh's pid files), and
// "client", this test process (which encodes the pods and decodes the created ones).
var measuredProcesses = []string{"kube-apiserver", "etcd", "kube-controller-manager", "kube-scheduler", "kubelet", "client"}

// cpuSample is one reading of the CPU seconds spent so far.
type cpuSample struct {
	processes                         map[string]float64 // by measuredProcesses' names
	injector, machineBusy, machineAll float64
	// replicas and calls are each injector replica's CPU seconds and webhook requests, by pod name; leaders
	// names those that held the lease.
	replicas, calls map[string]float64
	leaders         map[string]bool
}

// clusterPID reads hack/cluster.sh's pid file of a component; 0 when it has none.
func clusterPID(component string) int {
	dir := os.Getenv("CLUSTER_DIR")
	if dir == "" {
		dir = filepath.Join(repoRoot, "bin", "cluster")
	}
	b, err := os.ReadFile(filepath.Join(dir, "run", component+".pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// processCPU returns the user+system CPU seconds of pid (0 when it cannot be read).
func processCPU(pid int) float64 {
	if pid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command (which may hold spaces) start after the last ')'; utime and stime are the
	// 14th and 15th fields of the line, the 12th and 13th after it.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	s, _ := strconv.ParseFloat(f[12], 64)
	return (u + s) / clockTicks
}

// machineCPU returns the machine's busy and total CPU seconds (all cores) from /proc/stat.
func machineCPU() (busy, all float64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line)) // cpu user nice system idle iowait irq softirq steal ...
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		all += n
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy / clockTicks, all / clockTicks
}

// counterSum sums the values of a counter's series in a text exposition (all label sets).
func counterSum(scraped []byte, metric string) float64 {
	total := 0.0
	sc := bufio.NewScanner(bytes.NewReader(scraped))
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, metric)
		if !ok || (rest != "" && rest[0] != ' ' && rest[0] != '{') {
			continue
		}
		if i := strings.LastIndexByte(rest, ' '); i >= 0 {
			v, err := strconv.ParseFloat(rest[i+1:], 64)
			if err == nil {
				total += v
			}
		}
	}
	return total
}

func sampleCPU(injector []replicaScrape) cpuSample {
	busy, all := machineCPU()
	s := cpuSample{processes: map[string]float64{}, machineBusy: busy, machineAll: all, replicas: map[string]float64{},
		calls: map[string]float64{}, leaders: map[string]bool{}}
	for _, p := range measuredProcesses {
		pid := os.Getpid()
		if p != "client" {
			pid = clusterPID(p)
		}
		s.processes[p] = processCPU(pid)
	}
	for _, r := range injector {
		s.replicas[r.pod] = counterSum(r.metrics, "process_cpu_seconds_total")
		s.injector += s.replicas[r.pod]
		s.calls[r.pod] = counterSum(r.metrics, "sidecar_injector_webhook_requests_total")
		s.leaders[r.pod] = r.leader()
	}
	return s
}

// cpuCost accumulates CPU seconds over a phase's rounds.
type cpuCost struct {
	processes                         map[string]float64
	injector, machineBusy, machineAll float64
	// leader and followers split the injector's: the replica that held the lease at both ends of a round, and
	// the others; leaderCalls and followerCalls are the webhook requests each side answered (the Service
	// spreads the API server's connections, not always evenly). A round in which the lease moved counts in
	// neither (unsplit says how many).
	leader, followers          float64
	leaderCalls, followerCalls float64
	unsplit                    int
}

func (c *cpuCost) add(before, after cpuSample) {
	if c.processes == nil {
		c.processes = map[string]float64{}
	}
	for p, cpu := range after.processes {
		c.processes[p] += cpu - before.processes[p]
	}
	c.injector += after.injector - before.injector
	c.machineBusy += after.machineBusy - before.machineBusy
	c.machineAll += after.machineAll - before.machineAll
	var leader, followers, leaderCalls, followerCalls float64
	for pod, cpu := range after.replicas {
		b, ok := before.replicas[pod]
		if !ok || before.leaders[pod] != after.leaders[pod] {
			c.unsplit++ // a replica that restarted or won or lost the lease during the round
			return
		}
		calls := after.calls[pod] - before.calls[pod]
		if after.leaders[pod] {
			leader, leaderCalls = leader+cpu-b, leaderCalls+calls
		} else {
			followers, followerCalls = followers+cpu-b, followerCalls+calls
		}
	}
	c.leader, c.leaderCalls = c.leader+leader, c.leaderCalls+leaderCalls
	c.followers, c.followerCalls = c.followers+followers, c.followerCalls+followerCalls
}

// perReplica formats the injector's CPU milliseconds per created pod on the leader and on the other replicas,
// with the webhook requests each side answered.
func (c *cpuCost) perReplica(pods int) string {
	ms := func(s float64) string { return strconv.FormatFloat(1000*s/float64(pods), 'f', 2, 64) }
	if c.unsplit > 0 {
		return fmt.Sprintf("- (the lease or a replica changed in %d rounds)", c.unsplit)
	}
	return fmt.Sprintf("%s (%.0f calls) / %s (%.0f calls)", ms(c.leader), c.leaderCalls, ms(c.followers), c.followerCalls)
}

// perPod formats the CPU milliseconds per created pod, and how busy the machine was.
func (c *cpuCost) perPod(pods int) string {
	ms := func(s float64) string { return strconv.FormatFloat(1000*s/float64(pods), 'f', 2, 64) }
	busy := 0.0
	if c.machineAll > 0 {
		busy = 100 * c.machineBusy / c.machineAll
	}
	var each []string
	for _, p := range measuredProcesses {
		each = append(each, ms(c.processes[p]))
	}
	return fmt.Sprintf("%s / %s / %s / %s | %.0f%%", strings.Join(each, " / "), ms(c.injector), ms(c.measured()), ms(c.machineBusy), busy)
}

// measured is the CPU seconds of the processes a creation involves (measuredProcesses and the injector's
// replicas): unlike the whole machine's, it leaves out what else runs on a shared machine.
func (c *cpuCost) measured() float64 {
	total := c.injector
	for _, cpu := range c.processes {
		total += cpu
	}
	return total
}

// processColumns names perPod's and minus' figures, for the tables' headers.
func processColumns() string {
	return strings.Join(append(append([]string{}, measuredProcesses...), "injector (all replicas)", "all these", "whole machine"), " / ")
}

// minus formats what a created pod of this phase costs more than one of base, in CPU milliseconds per pod.
func (c *cpuCost) minus(base *cpuCost, pods, basePods int) string {
	ms := func(s, b float64) string {
		return strconv.FormatFloat(1000*(s/float64(pods)-b/float64(basePods)), 'f', 2, 64)
	}
	var each []string
	for _, p := range measuredProcesses {
		each = append(each, ms(c.processes[p], base.processes[p]))
	}
	return fmt.Sprintf("%s / %s / %s / %s", strings.Join(each, " / "), ms(c.injector, base.injector), ms(c.measured(), base.measured()),
		ms(c.machineBusy, base.machineBusy))
}

// connSampleInterval is how often connWatch reads the API server's sockets. One read of /proc/<pid>/net/tcp
// walks the kernel's whole established-connection table (262,144 buckets here) and took about 4 ms of CPU; read
// every 5 ms, as it was, the sampler kept about half a core of the machine's two busy, in every path alike, and
// depressed every rate it measured. A connection the API server opens and keeps, or closes itself (TIME_WAIT
// stays on its side for a minute), is still seen; one that opens and is closed by the injector within one
// interval would be missed.
const connSampleInterval = 100 * time.Millisecond

// connWatch records the API server's TCP connections to one address (the injector's Service) while a round
// runs, by their local ports, from its /proc/<pid>/net/tcp, every connSampleInterval.
type connWatch struct {
	pid     int
	remotes map[string]bool // addresses as /proc writes them (procAddr)
	stop    chan struct{}
	done    sync.WaitGroup
	mu      sync.Mutex
	seen    map[string]bool
	initial map[string]bool // open (or in TIME_WAIT) when the round started
}

// procAddr writes ip:port as /proc/net/tcp (IPv4) writes a remote address.
func procAddr(ip net.IP, port int) string {
	v4 := ip.To4()
	if v4 == nil {
		return ""
	}
	b := []byte{v4[3], v4[2], v4[1], v4[0]} // a little-endian 32-bit word on the machines this runs on
	return strings.ToUpper(hex.EncodeToString(b)) + ":" + fmt.Sprintf("%04X", port)
}

// watchConnections starts sampling the API server's connections to the injector: its Service's webhook port,
// or a replica's (should the API server route to endpoints).
func watchConnections(t *testing.T) *connWatch {
	t.Helper()
	w := &connWatch{pid: clusterPID("kube-apiserver"), stop: make(chan struct{}), seen: map[string]bool{}, remotes: map[string]bool{}}
	var svcs corev1.ServiceList
	if err := k8s.List(ctxFor(t, 30*time.Second), &svcs, client.InNamespace(injectorNS), injectorSelector); err != nil {
		t.Fatalf("the injector's Service: %v", err)
	}
	for _, svc := range svcs.Items {
		for _, p := range svc.Spec.Ports {
			if p.Name == "webhook" {
				w.remotes[procAddr(net.ParseIP(svc.Spec.ClusterIP), int(p.Port))] = true
			}
		}
	}
	var pods corev1.PodList
	if err := k8s.List(ctxFor(t, 30*time.Second), &pods, client.InNamespace(injectorNS), injectorSelector); err != nil {
		t.Fatal(err)
	}
	for _, p := range pods.Items {
		for _, cp := range p.Spec.Containers[0].Ports {
			if cp.Name == "webhook" {
				w.remotes[procAddr(net.ParseIP(p.Status.PodIP), int(cp.ContainerPort))] = true
			}
		}
	}
	delete(w.remotes, "")
	if w.pid == 0 || len(w.remotes) == 0 {
		return w
	}
	w.sample()
	w.initial, w.seen = w.seen, map[string]bool{}
	w.done.Add(1)
	go func() {
		defer w.done.Done()
		tick := time.NewTicker(connSampleInterval)
		defer tick.Stop()
		for {
			w.sample()
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *connWatch) sample() {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", w.pid))
	if err != nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) > 3 && w.remotes[f[2]] {
			w.seen[f[1]] = true // the local address: one per connection
		}
	}
}

// connections stops the watch and returns how many connections it saw in use during the round, and how many
// of them were opened during it (-1, -1: it could not watch).
func (w *connWatch) connections() (used, opened int) {
	if w.pid == 0 || len(w.remotes) == 0 {
		return -1, -1
	}
	close(w.stop)
	w.done.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	for c := range w.seen {
		if !w.initial[c] {
			opened++
		}
	}
	return len(w.seen), opened
}
