// Wrapper module: builds kwok (fake nodes and pods for a control plane without kubelets) at a pinned version.
module mp3converter.local/cluster/kwok

go 1.26.0

require sigs.k8s.io/kwok v0.8.0
