// Wrapper module: builds etcd's own main (go.etcd.io/etcd/server/v3) at a pinned version.
// etcd's server module replaces its siblings with local paths, which apply only when it is the main
// module; here they resolve to the published versions its go.mod requires.
module mp3converter.local/cluster/etcd

go 1.26.0

require go.etcd.io/etcd/server/v3 v3.6.16
