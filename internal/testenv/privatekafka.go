package testenv

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// PrivateKafka is a broker of a test's own, started with the launcher, so
// that stopping it disturbs no other test. It is torn down when the test
// ends.
type PrivateKafka struct {
	Brokers  []string
	launcher string
	dir      string
}

// StartPrivateKafka starts a private broker; it skips (or fails under
// make test) like every Kafka test when the environment has no Kafka.
func StartPrivateKafka(t *testing.T) *PrivateKafka {
	t.Helper()
	KafkaBrokers(t)
	_, here, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testenv: cannot locate the launcher")
	}
	launcher := filepath.Join(filepath.Dir(here), "..", "..", "integration", "env", "freshet-env")
	cmd := exec.Command(launcher, "up", "--only", "kafka")
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	k := &PrivateKafka{launcher: launcher}
	for _, line := range strings.Split(string(out), "\n") {
		name, val, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
		val = strings.Trim(val, "'")
		switch {
		case !ok:
		case name == "FRESHET_TEST_ENV_DIR":
			k.dir = val
		case name == "FRESHET_TEST_KAFKA_BROKERS":
			k.Brokers = strings.Split(val, ",")
		}
	}
	if k.dir != "" {
		t.Cleanup(func() { k.run(t, "down") })
	}
	if err != nil || k.dir == "" || len(k.Brokers) == 0 {
		t.Fatalf("private Kafka: %v\n%s", err, out)
	}
	return k
}

// Stop stops the broker (the launcher's kafka-stop).
func (k *PrivateKafka) Stop(t *testing.T) { t.Helper(); k.run(t, "kafka-stop") }

// Resume starts the stopped broker again on the same port and data.
func (k *PrivateKafka) Resume(t *testing.T) { t.Helper(); k.run(t, "kafka-resume") }

func (k *PrivateKafka) run(t *testing.T, verb string) {
	t.Helper()
	if out, err := exec.Command(k.launcher, verb, k.dir).CombinedOutput(); err != nil {
		t.Errorf("freshet-env %s: %v\n%s", verb, err, out)
	}
}
