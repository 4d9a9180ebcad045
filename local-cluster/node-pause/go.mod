module chaperone.dev/local-cluster/node-pause

go 1.26.0
